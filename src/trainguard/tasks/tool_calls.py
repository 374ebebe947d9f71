"""The `tool_use` answer language and its interpreter: `name = tool(arg)` lines, then `answer name`.

Standard library only: the verifier sends this file's text into the sandbox, where `main()` makes the instance's
tree and runs the answer there, so `read` reads real files that only the sandbox holds. `calc` evaluates
arithmetic with a small evaluator over the expression's syntax tree (never `eval`); every value is bounded.
"""

import ast
import json
import os
import re
import sys
from collections.abc import Callable

MAX_STEPS = 12  # calls an answer may make
MAX_ABS = 10**12  # the largest magnitude calc may produce
MAX_EXPR = 200  # characters in one calc expression
MAX_READ = 4096  # bytes `read` returns
NAME = r"[a-z_][a-z0-9_]*"
CALL = re.compile(rf"^({NAME})\s*=\s*(calc|lookup|read)\(\s*(\"[^\"]*\"|'[^']*'|{NAME})\s*\)$")
ANSWER = re.compile(rf"^answer\s+({NAME})$")
PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
TOOLS = ("calc", "lookup", "read")

Value = int | str
Call = tuple[str, str, str, bool]  # (variable, tool, argument, argument is a literal)


class ToolError(Exception):
    """A call that failed: the answer stops there and `calls_ok` is false."""


class ParseError(ValueError):
    """An answer that is not a program of this language (nothing of it runs)."""


def parse(text: str) -> tuple[list[Call], str]:
    """The calls in order and the variable the last line answers; raises ParseError naming the bad line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not (last := ANSWER.match(lines[-1])):
        raise ParseError("the last line must be `answer <variable>`")
    if len(lines) - 1 > MAX_STEPS:
        raise ParseError(f"more than {MAX_STEPS} calls")
    calls = []
    for line in lines[:-1]:
        found = CALL.match(line)
        if not found:
            raise ParseError(f"not a call: {line[:60]!r}")
        variable, tool, argument = found.groups()
        literal = argument[0] in "\"'"
        calls.append((variable, tool, argument[1:-1] if literal else argument, literal))
    return calls, last.group(1)


def calc(expression: str, variables: dict[str, Value]) -> int:
    """Integer arithmetic (+ - * / // % and parentheses) over numbers and integer variables; `/` must divide
    exactly. Raises ToolError on anything else."""
    if len(expression) > MAX_EXPR:
        raise ToolError(f"calc: longer than {MAX_EXPR} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"calc: cannot parse {expression!r}") from None
    return bounded(evaluate(tree.body, variables))


def bounded(value: int) -> int:
    if abs(value) > MAX_ABS:
        raise ToolError(f"calc: a value past {MAX_ABS}")
    return value


def evaluate(node: ast.AST, variables: dict[str, Value]) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return bounded(node.value)
    if isinstance(node, ast.Name):
        value = variables.get(node.id)
        if type(value) is not int:
            raise ToolError(f"calc: {node.id} is {'not set' if value is None else 'not a number'}")
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = evaluate(node.operand, variables)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        a, b = evaluate(node.left, variables), evaluate(node.right, variables)
        if isinstance(node.op, ast.Add):
            return bounded(a + b)
        if isinstance(node.op, ast.Sub):
            return bounded(a - b)
        if isinstance(node.op, ast.Mult):
            return bounded(a * b)
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            if b == 0:
                raise ToolError("calc: division by zero")
            if isinstance(node.op, ast.Mod):
                return a % b
            if isinstance(node.op, ast.Div) and a % b:
                raise ToolError(f"calc: {a}/{b} is not a whole number (use //)")
            return a // b
    raise ToolError(f"calc: only numbers, variables, + - * / // % and parentheses ({type(node).__name__})")


def run(text: str, table: dict[str, Value], read: Callable[[str], str]) -> dict:
    """Run an answer: {parsed, steps (calls that returned), calls_ok, answer (the value, or None), error}."""
    try:
        calls, answer = parse(text)
    except ParseError as err:
        return {"parsed": False, "steps": 0, "calls_ok": False, "answer": None, "error": str(err)}
    variables: dict[str, Value] = {}
    steps = 0
    try:
        for variable, tool, argument, literal in calls:
            if not literal and argument not in variables:
                raise ToolError(f"{tool}: {argument} is not set")
            value = argument if literal else variables[argument]
            if tool == "calc":
                variables[variable] = calc(str(value), variables)
            elif tool == "lookup":
                if value not in table:
                    raise ToolError(f"lookup: no key {value!r}")
                variables[variable] = table[str(value)]
            else:
                variables[variable] = number_or_text(read(str(value)))
            steps += 1
        if answer not in variables:
            raise ToolError(f"answer: {answer} is not set")
    except ToolError as err:
        return {"parsed": True, "steps": steps, "calls_ok": False, "answer": None, "error": str(err)}
    return {"parsed": True, "steps": steps, "calls_ok": True, "answer": variables[answer], "error": None}


def number_or_text(text: str) -> Value:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d{1,12}", text) else text


def read_file(path: str) -> str:
    """A file of the tree (the working folder): relative paths of plain names only, nothing above the tree."""
    if not PATH.match(path) or ".." in path.split("/"):
        raise ToolError(f"read: {path!r} is not a file of the tree")
    root = os.path.realpath(".")
    full = os.path.realpath(path)
    if not full.startswith(root + os.sep) or not os.path.isfile(full):
        raise ToolError(f"read: no file {path!r}")
    with open(full, encoding="utf-8", errors="replace") as f:
        return f.read(MAX_READ)


def main() -> None:
    """In the sandbox: the job (tree, table, answer) is JSON on stdin; the result is JSON on stdout."""
    job = json.loads(sys.stdin.read())
    os.mkdir("tree")
    os.chdir("tree")
    for path, text in job["tree"].items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    print(json.dumps(run(job["answer"], job["table"], read_file)))
