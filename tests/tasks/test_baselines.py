"""A verifier that a thoughtless answer passes is broken: no generated DED problem is passed by a constant, an
echo or the example's output, and no ABD instance by an empty input, 0, 1 or the wanted output itself."""

import random
from collections import Counter

from trainguard.tasks import build_task
from trainguard.tasks.programs import KINDS  # noqa: F401  (the generator's table of program kinds)


def test_every_generated_ded_problem_has_tests_with_two_outputs_and_balanced_inputs():
    task = build_task("ded")
    families: Counter = Counter()
    yes = 0
    for i in range(600):
        inst = task.instance(i)
        outputs = {out for _, out in inst.meta["tests"]}
        assert len(outputs) >= 2, (inst.meta["family"], outputs)
        families[inst.meta["family"]] += 1
        yes += inst.meta["family"] == "balanced_parens" and "YES" in outputs
    assert len(families) == 9 and yes == families["balanced_parens"]  # every parens problem has a YES test


def test_thoughtless_answers_pass_no_ded_or_abd_instance():
    rng = random.Random(0)
    for name, n in (("ded", 120), ("abd", 150)):
        task = build_task(name)
        passed: Counter = Counter()
        for i in range(n):
            inst = task.instance(i)
            for strategy, answer in task.baselines(inst, rng).items():
                passed[strategy] += task.score(inst, answer).value == 1.0
        assert len(passed) >= 4 and sum(passed.values()) == 0, (name, passed)
        reference = task.instance(7)
        assert task.score(reference, reference.reference).value == 1.0  # the references still solve them
