"""`bash_command`: a request in words about a generated file tree becomes one bash command in a fenced block.

The prompt names the tree's files but never their contents, so the expected output is not in it. An answer is
checked three ways: one fenced block (`format_ok`), a pipeline of known programs and flags that bashlex parses
(`valid`, tasks/bash_programs.py), and the same stdout as the reference command on a fresh copy of the same tree
in the sandbox (`executes_ok`, the score). Invalid commands are never run; valid ones only inside the sandbox.
"""

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field, field_validator

from trainguard.errors import ConfigError
from trainguard.sandbox import ExecResult, SandboxPool, shared_pool
from trainguard.tasks.answers import strip_thinking
from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig, known_kinds, ordered_range
from trainguard.tasks.bash_programs import InvalidCommand, check_command

FENCE = re.compile(r"```([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
SHELL_TAGS = ("", "bash", "sh", "shell")
# Run inside the sandbox (standard library only): make the tree in a fresh folder, then run the command there with
# no stdin, a fixed PATH and the C locale (so sort and glob order do not depend on the host), in a session of its
# own that is killed whole at the timeout. Tree and command arrive as JSON on stdin, never as program text.
RUNNER = """
import json, os, signal, subprocess, sys
job = json.loads(sys.stdin.read())
os.mkdir("tree")
os.chdir("tree")
for path, text in job["tree"].items():
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": os.getcwd()}
argv = ["/usr/bin/bash", "--noprofile", "--norc", "-c", job["command"]]
shell = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
try:
    code = shell.wait(timeout=job["timeout"])
except subprocess.TimeoutExpired:
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait()
    code = 124
sys.exit(code if code >= 0 else 128 - code)
"""
TIMED_OUT = 124  # the runner's exit code when the command ran past its timeout (as coreutils' timeout)
EXPECTED_KEPT = 8192  # reference outputs remembered per task (a reference runs once per instance, not per answer)

FOLDERS = {"logs": ("log", "txt"), "src": ("py", "sh"), "data": ("dat", "csv"), "docs": ("md", "txt")}
ROOT_EXTS = ("txt", "md", "dat")
WORDS = ("disk", "fan", "host", "job", "key", "lamp", "moon", "net", "oak", "pipe", "road", "sun", "tree", "wave")
LEVELS = ("INFO", "WARN", "ERROR")


class BashCommandConfig(TaskConfig):
    folders: tuple[int, int] = Field((2, 3), description="[low, high] folders in a tree (of logs, src, data, docs).")
    files: tuple[int, int] = Field((1, 3), description="[low, high] files per folder; the root gets 1-2 besides.")
    lines: tuple[int, int] = Field((3, 6), description="[low, high] lines per file.")
    kinds: list[str] | None = Field(None, description="Request kinds to draw from (see KINDS); default: all.")
    timeout: float = Field(2.0, gt=0, le=30, description="Wall-clock seconds a command may run in the sandbox.")
    processes: int = Field(
        16,
        ge=4,
        le=256,
        description="Processes a run may have: the runner, bash and one per pipeline command. Always passed to the "
        "sandbox: where it has no memory cgroup its default is 1 process, which could not start bash.",
    )

    _ordered = field_validator("folders", "files", "lines")(ordered_range)

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return known_kinds(value, KINDS)


Tree = dict[str, str]  # path -> content, in creation order


def make_name(rng: random.Random, taken: set[str]) -> str:
    while (name := rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") + rng.choice(["", *"klmnrst"])) in taken:
        pass
    taken.add(name)
    return name


def make_line(rng: random.Random, ext: str) -> str:
    if ext == "log":
        return f"{rng.choice(LEVELS)} {rng.choice(WORDS)} {rng.randint(1, 99)}"
    if ext == "dat":
        return str(rng.randint(1, 999))
    if ext == "csv":
        return f"{rng.choice(WORDS)},{rng.randint(1, 999)}"
    if ext in ("py", "sh"):
        return f"{rng.choice(WORDS)} = {rng.randint(0, 9)}"
    return " ".join(rng.sample(WORDS, rng.randint(2, 3)))


def make_tree(rng: random.Random, cfg: BashCommandConfig) -> Tree:
    """A few folders of files with generated names, each file a few generated lines, and 1-2 files at the root."""
    tree: Tree = {}
    taken: set[str] = set()
    folders = sorted(rng.sample(sorted(FOLDERS), min(len(FOLDERS), rng.randint(*cfg.folders))))
    places = [(folder, FOLDERS[folder]) for folder in folders] + [("", ROOT_EXTS)] * rng.randint(1, 2)
    for folder, exts in places:
        for _ in range(1 if not folder else rng.randint(*cfg.files)):
            ext = exts[0] if rng.random() < 0.7 else rng.choice(exts)
            path = f"{folder}/{make_name(rng, taken)}.{ext}" if folder else f"{make_name(rng, taken)}.{ext}"
            tree[path] = "".join(make_line(rng, ext) + "\n" for _ in range(rng.randint(*cfg.lines)))
    return tree


def render_tree(tree: Tree) -> str:
    """`logs/{ab.log,ku.txt} src/mo.py notes.txt`: names only, never contents."""
    by_folder: dict[str, list[str]] = {}
    for path in tree:
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder, []).append(name)
    parts = []
    for folder, names in sorted(by_folder.items(), key=lambda item: (item[0] == "", item[0])):
        listed = names[0] if len(names) == 1 else "{" + ",".join(sorted(names)) + "}"
        parts.append(f"{folder}/{listed}" if folder else " ".join(sorted(names)))
    return " ".join(parts)


def lines_of(tree: Tree, path: str) -> list[str]:
    return tree[path].splitlines()


def ext_of(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def folders_of(tree: Tree) -> list[str]:
    return sorted({path.split("/")[0] for path in tree if "/" in path})


def in_folder(tree: Tree, folder: str, ext: str | None = None) -> list[str]:
    return [p for p in tree if p.startswith(folder + "/") and (ext is None or ext_of(p) == ext)]


def words_in(tree: Tree, path: str) -> list[str]:
    return sorted({word for line in lines_of(tree, path) for word in line.split() if word.isalpha()})


Request = tuple[str, str]  # (the request in words, the reference command)
Kind = Callable[[random.Random, Tree], Request | None]  # None: this tree has nothing the kind needs


def count_ext(rng: random.Random, tree: Tree) -> Request | None:
    folder = rng.choice(folders_of(tree))
    ext = ext_of(rng.choice(in_folder(tree, folder)))
    return f"count the lines of every .{ext} file under {folder}", f"wc -l {folder}/*.{ext}"


def count_together(rng: random.Random, tree: Tree) -> Request | None:
    folder = rng.choice(folders_of(tree))
    ext = ext_of(rng.choice(in_folder(tree, folder)))
    return f"count all lines of the .{ext} files in {folder} together", f"cat {folder}/*.{ext} | wc -l"


def list_folder(rng: random.Random, tree: Tree) -> Request | None:
    folder = rng.choice([f for f in folders_of(tree) if len(in_folder(tree, f)) > 1] or [None])
    if folder is None:
        return None
    if rng.random() < 0.5:
        return f"list the files in {folder} sorted by name", f"ls {folder}"
    return f"list the files in {folder} in reverse name order", f"ls -r {folder}"


def head_tail(rng: random.Random, tree: Tree) -> Request | None:
    path = rng.choice(list(tree))
    if len(lines_of(tree, path)) < 2:
        return None
    n = rng.randint(1, len(lines_of(tree, path)) - 1)
    end, program = rng.choice([("first", "head"), ("last", "tail")])
    return f"show the {end} {n} line{'s' if n > 1 else ''} of {path}", f"{program} -n {n} {path}"


def grep_lines(rng: random.Random, tree: Tree) -> Request | None:
    path = rng.choice(list(tree))
    lines = lines_of(tree, path)
    words = [w for w in words_in(tree, path) if sum(w in line.split() for line in lines) < len(lines)]
    if not words:
        return None
    word = rng.choice(words)
    if rng.random() < 0.5:
        return f"show the lines of {path} that contain {word}", f"grep {word} {path}"
    return f"count the lines of {path} that contain {word}", f"grep -c {word} {path}"


def grep_files(rng: random.Random, tree: Tree) -> Request | None:
    folder = rng.choice(folders_of(tree))
    paths = in_folder(tree, folder)
    counts: dict[str, int] = {}
    for path in paths:
        for word in words_in(tree, path):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(w for w, k in counts.items() if k < len(paths))
    if not words:
        return None
    word = rng.choice(words)
    return f"list the files under {folder} that contain {word}", f"grep -l {word} {folder}/*"


def find_ext(rng: random.Random, tree: Tree) -> Request | None:
    exts = sorted({ext_of(p) for p in tree})
    ext = rng.choice([e for e in exts if sum(ext_of(p) == e for p in tree) > 1] or exts)
    return f"find every .{ext} file in the tree, sorted", f"find . -name '*.{ext}' | sort"


def sort_lines(rng: random.Random, tree: Tree) -> Request | None:
    path = rng.choice([p for p in tree if lines_of(tree, p) != sorted(lines_of(tree, p))] or [None])
    if path is None:
        return None
    if ext_of(path) == "csv":
        return f"sort the rows of {path} by their number", f"sort -t , -k 2 -n {path}"
    if ext_of(path) != "dat":
        return f"sort the lines of {path}", f"sort {path}"
    if rng.random() < 0.5 or len(lines_of(tree, path)) < 2:
        return f"sort the numbers in {path}, largest first", f"sort -nr {path}"
    n = rng.randint(1, len(lines_of(tree, path)) - 1)
    return f"show the {n} largest number{'s' if n > 1 else ''} in {path}", f"sort -nr {path} | head -n {n}"


def count_words(rng: random.Random, tree: Tree) -> Request | None:
    path = rng.choice([p for p in tree if ext_of(p) not in ("dat", "csv")] or [None])  # one word a line: wc -l
    if path is None:
        return None
    return f"count the words in {path}", f"wc -w {path}"


def count_levels(rng: random.Random, tree: Tree) -> Request | None:
    logs = [p for p in tree if ext_of(p) == "log"]
    if not logs:
        return None
    path = rng.choice(logs)
    return f"count each level (first word) in {path}", f"cut -d ' ' -f 1 {path} | sort | uniq -c"


KINDS: dict[str, Kind] = {
    "count_ext": count_ext,
    "count_together": count_together,
    "list_folder": list_folder,
    "head_tail": head_tail,
    "grep_lines": grep_lines,
    "grep_files": grep_files,
    "find_ext": find_ext,
    "sort_lines": sort_lines,
    "count_words": count_words,
    "count_levels": count_levels,
}


def fenced_command(response: str) -> str | None:
    """The command when the response has exactly one fenced block, tagged bash/sh/shell or not at all."""
    blocks = FENCE.findall(strip_thinking(response))
    if len(blocks) != 1 or blocks[0][0].lower() not in SHELL_TAGS:
        return None
    return blocks[0][1].strip()


def normalise_output(text: str) -> str:
    """Stdout compared line by line with runs of spaces collapsed (wc pads its counts) and trailing blanks cut."""
    return "\n".join(" ".join(line.split()) for line in text.rstrip().splitlines())


def fence(command: str) -> str:
    return f"```bash\n{command}\n```"


@TASKS.register("bash_command")
class BashCommandTask(Task):
    """A request about a generated file tree → one bash command; scored by running it and the reference in the
    sandbox on the same tree and comparing stdout."""

    name = "bash_command"
    Config = BashCommandConfig
    config: BashCommandConfig

    def __init__(self, config: BashCommandConfig) -> None:
        super().__init__(config)
        self.pool: SandboxPool | None = None  # None: the process-wide shared pool
        self.expected: dict[str, str] = {}  # the reference's normalised stdout, by job

    def instance(self, id: int) -> Instance:
        rng = self.rng(id)
        kinds = self.config.kinds or list(KINDS)
        for _ in range(100):
            tree = make_tree(rng, self.config)
            kind = rng.choice(kinds)
            request = KINDS[kind](rng, tree)
            if request is not None:
                break
        else:
            raise ConfigError(f"bash_command: no tree of these sizes suits the kinds {kinds}")
        words, command = request
        prompt = f"files: {render_tree(tree)}\nbash: {words}\n"
        meta = {"family": kind, "tree": tree, "command": command}
        return Instance(id=id, prompt=prompt, reference=fence(command), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        return self.score_many([instance], [response])[0]

    def score_many(self, instances: Sequence[Instance], responses: Sequence[str]) -> list[Score]:
        """Score answers in one batch through the sandbox: the references not yet run, then every valid answer."""
        checked = [self.check(response) for response in responses]
        keys = [self.job(inst.meta["tree"], inst.meta["command"]) for inst in instances]
        wanted = {key for key, (_, command) in zip(keys, checked, strict=True) if command}
        missing = sorted(key for key in wanted if key not in self.expected)
        runs = [(inst, command) for inst, (_, command) in zip(instances, checked, strict=True) if command]
        results = self.execute(missing + [self.job(inst.meta["tree"], command) for inst, command in runs])
        for key, result in zip(missing, results, strict=False):
            if result.ok and result.stdout.strip():
                self.expected[key] = normalise_output(result.stdout)
                if len(self.expected) > EXPECTED_KEPT:
                    del self.expected[next(iter(self.expected))]  # the oldest
        answers = iter(results[len(missing) :])
        scores = []
        for key, (details, command) in zip(keys, checked, strict=True):
            if command is None:
                scores.append(Score(0.0, details | {"executes_ok": False}))
                continue
            result = next(answers)
            timed_out = result.status == "timeout" or result.returncode == TIMED_OUT
            details |= {"status": result.status, "returncode": result.returncode, "timed_out": timed_out}
            if key not in self.expected:
                details["error"] = "the reference command did not run in the sandbox"
            ok = result.ok and key in self.expected and normalise_output(result.stdout) == self.expected[key]
            scores.append(Score(float(ok), details | {"executes_ok": ok, "got": result.stdout[:200]}))
        return scores

    def check(self, response: str) -> tuple[dict[str, Any], str | None]:
        """Details of the format and validity checks, and the command to run when both pass."""
        command = fenced_command(response)
        if command is None:
            return {"format_ok": False, "valid": False, "error": "not exactly one ```bash block"}, None
        try:
            check_command(command)
        except InvalidCommand as err:
            return {"format_ok": True, "valid": False, "error": str(err)}, None
        return {"format_ok": True, "valid": True}, command

    def job(self, tree: dict[str, str], command: str) -> str:
        return json.dumps({"tree": tree, "command": command, "timeout": self.config.timeout})

    def execute(self, stdins: list[str]) -> list[ExecResult]:
        if not stdins:
            return []
        pool = self.pool or shared_pool()
        limits = {"timeout": self.config.timeout + 1.0, "processes": self.config.processes, "output_kb": 64}
        return pool.map([(RUNNER, stdin) for stdin in stdins], **limits)

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        """Commands that read nothing into the request: list or dump everything, or cat/wc the path it names."""
        request = instance.prompt.split("\nbash: ", 1)[1].split()
        named = next((w for w in request if w in instance.meta["tree"] or w in FOLDERS), ".")
        commands = {"ls": "ls", "ls -R": "ls -R", "find": "find . | sort", "cat all": "cat */* *"}
        commands |= {"cat named": f"cat {named}", "wc named": f"wc -l {named}", "head named": f"head {named}"}
        return {"empty": "", **{name: fence(command) for name, command in commands.items()}}

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The reference with one edit (a count moved, a flag added or dropped, another counting mode); checked by
        the caller, which drops the rare edit that changes nothing."""
        command = instance.meta["command"]
        edits = [
            ("ls -r ", "ls ") if "ls -r " in command else ("ls ", "ls -r "),
            ("grep ", "grep -v "),
            ("wc -l", "wc -c"),
        ]
        edits += [("wc -w", "wc -c"), ("sort -nr", "sort -n"), ("| sort", "| sort -r"), ("uniq -c", "uniq")]
        edits += [("-k 2 -n", "-k 2 -nr")] + ([("sort ", "sort -r ")] if "sort -" not in command else [])
        edits += [(f"-n {n} ", f"-n {n + 1} ") for n in range(1, 9)]
        edits = [(a, b) for a, b in edits if a in command]
        if not edits:
            return fence("ls")
        a, b = rng.choice(edits)
        return fence(command.replace(a, b, 1))
