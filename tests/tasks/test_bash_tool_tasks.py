"""bash_command and tool_use: validity rules, the tool language, references in the sandbox, baselines, and
hostile answers (run only after a canary has shown that the process cap holds)."""

import random
import re

import pytest

from trainguard.sandbox import Limits, SandboxPool
from trainguard.sandbox.worker import descendants
from trainguard.tasks.base import Instance
from trainguard.tasks.bash_command import TIMED_OUT, BashCommandTask, fenced_command, normalise_output, render_tree
from trainguard.tasks.bash_programs import InvalidCommand, check_command
from trainguard.tasks.tool_calls import ToolError, calc, run
from trainguard.tasks.tool_use import ToolUseTask

LIMITS = Limits(timeout=3.0, memory_mb=256, processes=16, file_mb=8, output_kb=256)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=LIMITS) as p:
        yield p


@pytest.fixture(scope="module")
def redteam_pool():
    """One worker, so that what a hostile run leaves behind can be looked for in its process tree."""
    with SandboxPool(workers=1, limits=LIMITS) as p:
        assert p.isolation.bwrap, f"bubblewrap must be usable where hostile answers run: {p.isolation.reason}"
        yield p


@pytest.fixture(scope="module")
def process_cap_holds(redteam_pool):
    """Canary: a bounded burst of forks stops at the cap and leaves nothing behind."""
    source = (
        "import os, time\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)\n"
    )
    result = redteam_pool.run(source)
    assert result.status == "ok", result
    assert int(result.stdout) < LIMITS.processes
    assert residue(redteam_pool) == []
    return True


def residue(pool: SandboxPool) -> list[int]:
    """Host pids left in the worker's process tree besides the server and its zygote."""
    return sorted(descendants(pool.workers[0].proc.pid))[2:]


def bash_task(pool: SandboxPool, **params) -> BashCommandTask:
    task = BashCommandTask(BashCommandTask.Config(**params))
    task.pool = pool
    return task


def tool_task(pool: SandboxPool, **params) -> ToolUseTask:
    task = ToolUseTask(ToolUseTask.Config(**params))
    task.pool = pool
    return task


NOTES = {
    "notes.txt": "beta\nalpha\ngamma\n",
    "logs/a.log": "INFO disk 1\nWARN fan 2\nINFO fan 3\n",
    "logs/b.txt": "x\n",
}


def hand_instance(command: str) -> Instance:
    return Instance(
        0, "files: ...\n", f"```bash\n{command}\n```", {"family": "hand", "tree": NOTES, "command": command}
    )


# --- bash_command: the validity table and the answer format (no sandbox) ---


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("wc -l logs/*.log", [["wc", "-l", "logs/*.log"]]),
        ("find . -name '*.log' | sort", [["find", ".", "-name", "*.log"], ["sort"]]),
        ("head -3 notes.txt", [["head", "-3", "notes.txt"]]),
        ("sort -t, -k 2 -nr data.csv", [["sort", "-t,", "-k", "2", "-nr", "data.csv"]]),
        ("grep 'x$' a.txt", [["grep", "x$", "a.txt"]]),  # `$` inside single quotes is a plain character
        ("cut -d ' ' -f 1 a.log | sort | uniq -c", [["cut", "-d", " ", "-f", "1", "a.log"], ["sort"], ["uniq", "-c"]]),
    ],
)
def test_valid_commands_give_their_words(command, words):
    assert check_command(command) == words


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("cat /etc/passwd", "reaches outside the tree"),
        ("cat ../secret", "reaches outside the tree"),
        ("cat .?/x", "reaches outside the tree"),
        ("sleep 1000", "unknown program 'sleep'"),
        ("echo 3", "unknown program 'echo'"),
        (":(){ :|:& };:", "'(' is not allowed"),
        ("ls; ls", "';' is not allowed"),
        ("ls > out.txt", "'>' is not allowed"),
        ('cat "$HOME"', "'$' is not allowed"),
        ("find . -printf 3", "find: unknown or unsafe test -printf"),
        ("tail -f notes.txt", "tail: unknown flag -f"),
        ("sort -o x notes.txt", "sort: unknown flag -o"),
        ("head -n", "head: -n needs a value"),
        ("ls -l", "ls: unknown flag -l"),
    ],
)
def test_invalid_commands_say_why(command, reason):
    with pytest.raises(InvalidCommand, match=re.escape(reason)):
        check_command(command)


def test_exactly_one_shell_block_is_the_format():
    assert fenced_command("Run:\n```bash\nls src\n```\n") == "ls src"
    assert fenced_command("```\nls\n```") == "ls"
    assert fenced_command("<think>```bash\nls -R\n```</think>```sh\nls\n```") == "ls"
    assert fenced_command("```bash\nls\n```\n```bash\nls -r\n```") is None  # two blocks
    assert fenced_command("```python\nprint(1)\n```") is None
    assert fenced_command("ls src") is None


def test_tree_is_shown_by_name_only():
    assert render_tree(NOTES) == "logs/{a.log,b.txt} notes.txt"
    assert normalise_output("  3 logs/a.log\n  1 logs/b.txt\n  4 total\n\n") == "3 logs/a.log\n1 logs/b.txt\n4 total"


def test_bash_instances_are_deterministic_short_and_hide_contents():
    one, two = BashCommandTask(BashCommandTask.Config()), BashCommandTask(BashCommandTask.Config())
    for id in range(100):
        a, b = one.instance(id), two.instance(id)
        assert (a.prompt, a.reference, a.meta) == (b.prompt, b.reference, b.meta)
        assert len(a.prompt) <= 200 and len(a.reference) <= 120
        assert not any(line in a.prompt for text in a.meta["tree"].values() for line in text.splitlines())
    assert len({one.instance(id).prompt for id in range(100)}) == 100


# --- bash_command in the sandbox ---


def test_bash_references_score_one_over_a_sample(pool):
    task = bash_task(pool)
    instances = [task.instance(id) for id in range(100)]
    scores = task.score_many(instances, [inst.reference for inst in instances])
    assert [s.value for s in scores] == [1.0] * 100, [s.details for s in scores if s.value != 1.0][:3]
    assert all(s.details["format_ok"] and s.details["valid"] and s.details["executes_ok"] for s in scores)
    assert len({inst.meta["family"] for inst in instances}) == 10  # every kind is drawn


def test_bash_verifier_on_right_wrong_and_malformed_answers(pool):
    task = bash_task(pool)
    inst = hand_instance("head -n 2 notes.txt")  # beta, alpha
    right = task.score_many([inst] * 3, ["```bash\nhead -n 2 notes.txt\n```", "```\nhead -2 notes.txt\n```", "x"])
    assert [s.value for s in right[:2]] == [1.0, 1.0]
    assert right[0].details["got"] == "beta\nalpha\n"
    wrong = task.score(inst, "```bash\nhead -n 3 notes.txt\n```")
    assert wrong.value == 0.0
    assert (wrong.details["format_ok"], wrong.details["valid"], wrong.details["executes_ok"]) == (True, True, False)
    failing = task.score(inst, "```bash\nhead -n 2 missing.txt\n```")
    assert (failing.value, failing.details["status"], failing.details["returncode"]) == (0.0, "error", 1)
    two_blocks = task.score(inst, "```bash\nhead -n 2 notes.txt\n```\n```bash\nls\n```")
    assert two_blocks.value == 0.0 and two_blocks.details["format_ok"] is False
    printed = task.score(inst, "```bash\necho beta alpha\n```")
    assert printed.value == 0.0 and printed.details["valid"] is False and "status" not in printed.details  # not run
    counted = task.score(hand_instance("wc -l logs/*.log"), "```bash\nwc -l logs/a.log\n```")
    assert counted.value == 1.0 and counted.details["got"] == "3 logs/a.log\n"


def test_bash_baselines_pass_rarely_and_wrong_completions_fail(pool):
    task = bash_task(pool)
    instances = [task.instance(id) for id in range(40)]
    rng = random.Random(0)
    pairs = [(inst, answer) for inst in instances for answer in task.baselines(inst, rng).values()]
    scores = task.score_many([inst for inst, _ in pairs], [answer for _, answer in pairs])
    assert len(pairs) == 40 * 8 and sum(s.value for s in scores) == 0
    wrong = [task.wrong_completion(inst, random.Random(inst.id)) for inst in instances]
    assert all(answer != inst.reference for answer, inst in zip(wrong, instances, strict=True))
    assert sum(s.value for s in task.score_many(instances, wrong)) <= 2  # the caller drops the rare no-op edit


def test_hostile_commands_are_refused_before_they_run(redteam_pool):
    task = bash_task(redteam_pool)
    inst = hand_instance("sort -r notes.txt")
    for command in ("cat /etc/passwd", "sleep 1000", ":(){ :|:& };:", "cat /proc/*/cmdline", "cat ../../etc/passwd"):
        score = task.score(inst, f"```bash\n{command}\n```")
        assert (score.value, score.details["valid"], "status" in score.details) == (0.0, False, False), command


def test_hostile_commands_are_contained_even_if_they_ran(redteam_pool, process_cap_holds):
    """As if the table had a hole: the sandbox alone holds each one (nothing to read, a timeout, the process cap)."""
    task = bash_task(redteam_pool, timeout=1.0)
    assert task.score(hand_instance("sort -r notes.txt"), "```bash\nsort -r notes.txt\n```").value == 1.0
    expected = "gamma\nbeta\nalpha"  # the reference's output: held by the host, never in a candidate's run
    snoop = "cat /etc/passwd /proc/[0-9]*/cmdline /proc/[0-9]*/environ /proc/[0-9]*/fd/0; ls -aR /tmp /"
    (read,) = task.execute([task.job(NOTES, snoop)])
    assert "root:x:0:0" not in read.stdout and expected not in normalise_output(read.stdout)
    assert "sort -r" not in task.job(NOTES, snoop)  # the reference command is not sent with an answer either
    (hang,) = task.execute([task.job(NOTES, "sleep 1000 | cat")])
    assert (hang.status, hang.returncode) == ("error", TIMED_OUT) and hang.wall < 2.5
    (bomb,) = task.execute([task.job(NOTES, ":(){ :|:& };:")])
    assert bomb.status in ("ok", "error", "timeout", "killed") and bomb.wall < 3.0
    assert residue(redteam_pool) == []
    assert task.score(hand_instance("sort -r notes.txt"), "```bash\nsort -r notes.txt\n```").value == 1.0


# --- tool_use: the language (no sandbox) ---


def test_calc_is_integer_arithmetic_and_nothing_else():
    assert calc("3*a+b", {"a": 7, "b": 5}) == 26
    assert calc("(a - 10) // 4 % 5", {"a": 47}) == 4
    assert calc("12/4", {}) == 3 and calc("-a", {"a": 2}) == -2
    for expression, reason in [
        ("7/2", "not a whole number"),
        ("1//0", "division by zero"),
        ("2**10", "only numbers"),
        ("__import__('os').system('id')", "only numbers"),
        ("a+1", "a is not set"),
        ("a*2", "a is not a number"),
        ("999999*999999*9", "a value past"),
        ("1 +", "cannot parse"),
    ]:
        with pytest.raises(ToolError, match=reason):
            calc(expression, {"a": "fig.txt"} if expression == "a*2" else {})


TABLE = {"apple": 7, "pear": "n.txt"}
FILES = {"n.txt": "5\n", "k.txt": "apple\n"}


def test_programs_run_call_by_call_with_results_feeding_later_calls():
    program = 'a = lookup("apple")\nf = lookup("pear")\nb = read(f)\nc = calc("3*a+b")\nanswer c'
    assert run(program, TABLE, FILES.__getitem__) == {
        "parsed": True,
        "steps": 4,
        "calls_ok": True,
        "answer": 26,
        "error": None,
    }
    stopped = run('a = lookup("fig")\nb = calc("1")\nanswer b', TABLE, FILES.__getitem__)
    assert (stopped["parsed"], stopped["steps"], stopped["calls_ok"], stopped["answer"]) == (True, 0, False, None)
    for malformed in ("answer 26", "a = eval('1')\nanswer a", "the answer is 26", 'a = calc("1")', ""):
        assert run(malformed, TABLE, FILES.__getitem__)["parsed"] is False, malformed
    too_long = "\n".join(f'v{i} = calc("{i}")' for i in range(13)) + "\nanswer v0"
    assert run(too_long, TABLE, FILES.__getitem__)["error"] == "more than 12 calls"


def test_tool_instances_are_deterministic_short_and_hide_the_values():
    one, two = ToolUseTask(ToolUseTask.Config()), ToolUseTask(ToolUseTask.Config())
    for id in range(100):
        a, b = one.instance(id), two.instance(id)
        assert (a.prompt, a.reference, a.meta) == (b.prompt, b.reference, b.meta)
        assert len(a.prompt) <= 200 and len(a.reference) <= 120
        assert str(a.meta["answer"]) not in re.findall(r"\d+", a.prompt)
        assert a.reference.count("(") >= 3  # at least two tool calls and a calc
    assert len({one.instance(id).prompt for id in range(100)}) == 100


# --- tool_use in the sandbox ---


def hand_tool_instance() -> Instance:
    prompt = "tools: ...\nkeys: apple pear\nfiles: k.txt n.txt\nfind: 3*[apple]+<n.txt>\n"
    reference = 'a = lookup("apple")\nb = read("n.txt")\nr = calc("3*a+b")\nanswer r'
    return Instance(0, prompt, reference, {"family": "hand", "table": TABLE, "tree": FILES, "answer": 26})


def test_tool_references_score_one_over_a_sample(pool):
    task = tool_task(pool)
    instances = [task.instance(id) for id in range(100)]
    scores = task.score_many(instances, [inst.reference for inst in instances])
    assert [s.value for s in scores] == [1.0] * 100, [s.details for s in scores if s.value != 1.0][:3]
    calls = [inst.reference.count("\n") for inst in instances]  # every line but `answer` is a call
    assert [s.details["steps"] for s in scores] == calls
    assert {inst.meta["family"] for inst in instances} == {
        "lookups",
        "reads",
        "mixed",
        "key_in_file",
        "file_in_key",
        "chain",
    }


def test_tool_verifier_on_right_wrong_and_malformed_answers(pool):
    task = tool_task(pool)
    inst = hand_tool_instance()
    other_route = 'x = read("k.txt")\ny = lookup(x)\nz = read("n.txt")\nw = calc("y*3+z")\nanswer w'
    answers = [
        inst.reference,
        "```\n" + other_route + "\n```",
        'a = lookup("apple")\nb = read("n.txt")\nr = calc("2*a+b")\nanswer r',  # wrong formula: 19
        'a = lookup("plum")\nanswer a',  # unknown key
        'a = read("/etc/passwd")\nanswer a',
        'a = read("../tree/n.txt")\nanswer a',
        "answer 26",
    ]
    right, route, wrong, unknown, passwd, above, constant = task.score_many([inst] * len(answers), answers)
    assert (right.value, right.details["steps"], right.details["answer"]) == (1.0, 3, 26)
    assert (route.value, route.details["steps"]) == (1.0, 4)
    assert (wrong.value, wrong.details["calls_ok"], wrong.details["answer"], wrong.details["answer_ok"]) == (
        0.0,
        True,
        19,
        False,
    )
    assert (unknown.value, unknown.details["calls_ok"], unknown.details["error"]) == (
        0.0,
        False,
        "lookup: no key 'plum'",
    )
    assert passwd.value == 0.0 and "not a file of the tree" in passwd.details["error"]
    assert above.value == 0.0 and "not a file of the tree" in above.details["error"]
    assert (constant.value, constant.details["parsed"], constant.details["steps"]) == (0.0, False, 0)
    assert task.wrong_completion(inst, random.Random(0)) in (
        'a = lookup("apple")\nb = read("n.txt")\nr = calc("4*a+b")\nanswer r',
        'a = lookup("apple")\nb = read("n.txt")\nr = calc("5*a+b")\nanswer r',
    )


def test_tool_baselines_pass_rarely(pool):
    task = tool_task(pool)
    instances = [task.instance(id) for id in range(100)]
    rng = random.Random(0)
    pairs = [(inst, answer) for inst in instances for answer in task.baselines(inst, rng).values()]
    scores = task.score_many([inst for inst, _ in pairs], [answer for _, answer in pairs])
    assert len(pairs) == 500 and sum(s.value for s in scores) == 0
    wrong = task.score_many(instances, [task.wrong_completion(inst, random.Random(inst.id)) for inst in instances])
    assert sum(s.value for s in wrong) == 0
