"""The grouped sampler: one prefill per prompt, finished samples leave the batch. Greedy it must pick what HF
`generate` picks; sampling it must draw from the tempered, top-p-cut distribution and repeat under a seed."""

import torch
from scipy.stats import chisquare
from transformers import LlamaForCausalLM

from trainguard.eval.accuracy import generate_ids
from trainguard.models.presets import preset_config
from trainguard.rl.sampler import sample_groups

EOS, PAD = 2, 0


class Tok:
    eos_token_id, pad_token_id = EOS, PAD


def model_that_stops() -> torch.nn.Module:
    """A random tiny Llama whose EOS row is scaled up until greedy answers end at different lengths."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(preset_config("tiny", 260, 128, 1, EOS, PAD)).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 3.5
    return model


def prompts(n: int = 6) -> list[list[int]]:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(3, 12, (n,), generator=gen).tolist()
    return [torch.randint(3, 250, (k,), generator=gen).tolist() for k in lengths]


def test_greedy_picks_what_generate_picks_while_samples_finish_at_different_steps():
    model, ps = model_that_stops(), prompts()
    ours = sample_groups(model, ps, 3, 12, EOS, PAD)
    theirs = generate_ids(model, Tok(), [p for p in ps for _ in range(3)], 12)
    assert ours == theirs
    lengths = {len(r) for r in ours}
    assert len(lengths) >= 2 and min(lengths) < 12  # some rows left the batch while others went on


def test_sampling_repeats_under_a_seed_and_differs_without_it():
    model, ps = model_that_stops(), prompts()
    draws = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        draws.append(sample_groups(model, ps, 4, 10, EOS, PAD, temperature=1.0))
    assert draws[0] == draws[1] != draws[2]
    assert all(r[-1] == EOS or len(r) == 10 for r in draws[0])  # every sample ends at its EOS or the cap


def test_samples_follow_the_tempered_distribution_and_top_p_cuts_its_tail():
    """4,000 one-token samples of one prompt fit softmax(logits / 0.5) (chi-square) and not the untempered
    softmax, which the same test rejects; with top_p every drawn token lies in the nucleus."""
    model, prompt = model_that_stops(), prompts(1)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(prompt)).logits[0, -1]
    torch.manual_seed(0)
    drawn = torch.tensor([r[0] for r in sample_groups(model, prompt, 4000, 1, EOS, PAD, temperature=0.5)])
    counts = torch.bincount(drawn, minlength=logits.numel()).double()
    for temperature, fits in ((0.5, True), (1.0, False)):
        expected = (logits.double() / temperature).softmax(-1) * len(drawn)
        assert (chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3) == fits
    probs = (logits / 0.5).softmax(-1)
    ranked, order = probs.sort(descending=True)
    nucleus = set(order[: int((ranked.cumsum(0) < 0.5).sum()) + 1].tolist())
    torch.manual_seed(0)
    cut = {r[0] for r in sample_groups(model, prompt, 2000, 1, EOS, PAD, temperature=0.5, top_p=0.5)}
    assert cut <= nucleus and len(cut) > 1
