"""The wrapper kernel's languages (C, C++, Go, Rust, Ruby, PHP, Perl, Lua, SQLite) on real images
through a real gateway, and the wrapper's declaration keeping without Docker."""

from __future__ import annotations

import asyncio
import importlib
import sys
from dataclasses import dataclass

import docker
import pytest

from tests.ci import require
from tests.harness import ROOT, GatewayProcess


def _wrapper_module(name: str):
    """Import ``kernelgate_wrapper.<name>`` from images/wrapper without writing __pycache__
    there: every file of an image folder enters its image tag."""
    sys.path.insert(0, str(ROOT / "images" / "wrapper"))
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        return importlib.import_module(f"kernelgate_wrapper.{name}")
    finally:
        sys.dont_write_bytecode = saved
        sys.path.pop(0)


sources = _wrapper_module("sources")


# ------------------------------------------------------------------ without Docker


def _program(family: str, *cells: str) -> tuple[str, sources.Declarations]:
    """The program of the last cell after the earlier cells compiled."""
    kept = sources.Declarations()
    for number, code in enumerate(cells, 1):
        cell = sources.split(family, code, f"In[{number}]")
        program = sources.assemble(family, kept.merged(cell.declarations), cell)
        kept.keep(cell.declarations)
    return program.text, kept


def test_c_cells_keep_declarations_and_run_statements_in_main():
    text, kept = _program(
        "c",
        "#include <stdio.h>\nint square(int x) { return x * x; }\nint base = 40;",
        'printf("%d\\n", square(1) + base);\nint local = square(2);',
    )
    assert len(kept) == 3  # the include, square and base; not the statement or `local`
    before_main, main = text.split("int main(void) {")
    assert "#include <stdio.h>" in before_main and "int square(int x)" in before_main
    assert "int base = 40;" in before_main
    assert 'printf("%d\\n", square(1) + base);' in main and "int local = square(2);" in main
    assert '#line 1 "In[2]"' in main  # diagnostics and assertions name the cell's lines


def test_c_redefinition_replaces_in_place_and_main_is_not_kept():
    text, kept = _program(
        "c",
        "int f(void) { return 1; }\nint g(void) { return f(); }",
        "int f(void) { return 2; }",
        'int main(void) { return g(); }',
    )
    assert text.index("return 2;") < text.index("int g(void)") < text.index("int main(void) { return g(); }")
    assert "return 1;" not in text and text.count("int main") == 1
    assert len(kept) == 2


def test_c_variables_after_a_statement_or_computed_are_locals():
    cell = sources.split("c", "int a = 1;\nint b = a + 1;\nputs(\"x\");\nint c = 3;", "In[1]")
    assert [c.text for c in cell.declarations] == ["int a = 1;"]
    assert [c.text for c in cell.statements] == ["int b = a + 1;", 'puts("x");', "int c = 3;"]


def test_cpp_splits_templates_classes_and_statements():
    cell = sources.split("cpp", (
        "#include <vector>\n"
        "template <typename T> T biggest(T a, T b) { return a > b ? a : b; }\n"
        "struct P { int x; };\n"
        "std::vector<int> v{1, 2};\n"
        "if (v.size() > 1) { v.push_back(3); } else { v.clear(); }\n"
        "auto n = biggest(1, 2);\n"
    ), "In[1]")
    assert [c.key for c in cell.declarations] == [
        "directive:#include <vector>", "function:biggest/2", "type:P", "variable:v"]
    assert [c.text for c in cell.statements] == [
        "if (v.size() > 1) { v.push_back(3); } else { v.clear(); }", "auto n = biggest(1, 2);"]


def test_go_keeps_used_imports_only():
    text, kept = _program(
        "go",
        'import (\n\t"fmt"\n\t"strings"\n)\nfunc shout(s string) string { return strings.ToUpper(s) }',
        'import "os"\nfmt.Println(len(os.Args))',
        'fmt.Println("hi")',
    )
    assert '"fmt"' in text and '"strings"' in text  # strings: used by the kept shout
    assert '"os"' not in text  # only the second cell used it
    assert "//line In[3]:1\nfmt.Println(\"hi\")" in text


def test_go_methods_and_var_before_statements():
    cell = sources.split("go", (
        "type P struct{ X int }\nfunc (p *P) Get() int { return p.X }\nvar g = 1\n"
        "x := 2\nvar y = x\nfunc() { println(y) }()"
    ), "In[1]")
    assert [c.key for c in cell.declarations] == ["type:P", "method:P.Get", "var:g"]
    assert [c.text for c in cell.statements] == ["x := 2", "var y = x", "func() { println(y) }()"]


def test_boundaries_ignore_comments_strings_and_raw_strings():
    rust = sources.split("rust", 'let s = r#"} fn g() {}"#; // fn h() {}\n/* fn i() {} */ fn f() {}', "In[1]")
    assert [c.key for c in rust.declarations] == ["fn:f"]
    assert [c.text for c in rust.statements] == ['let s = r#"} fn g() {}"#;']
    cpp = sources.split("cpp", 'auto s = R"x(} int g() {)x"; int f() { return \'}\'; }', "In[1]")
    assert [c.key for c in cpp.declarations] == ["variable:s", "function:f/0"]
    go = sources.split("go", 'x := `}\nfunc g() {}`\nfunc f() {}', "In[1]")
    assert [c.key for c in go.declarations] == ["func:f"]
    assert [(c.text, c.line) for c in go.statements] == [("x := `}\nfunc g() {}`", 1)]


def test_rust_items_with_attributes_and_statements():
    text, kept = _program(
        "rust",
        "#[derive(Debug)]\nstruct P { x: i32 }\nimpl P { fn get(&self) -> i32 { self.x } }\n"
        "fn make(x: i32) -> P { P { x } }",
        "let p = make(41);\nprintln!(\"{}\", p.get() + 1);\nfor i in 0..2 { println!(\"{}\", i); }",
    )
    assert [c.key for c in kept.merged([])] == ["item:P", "impl:impl P", "fn:make"]
    assert "#[derive(Debug)]\nstruct P" in text
    main = text.split("fn main() {")[1]
    assert "let p = make(41);" in main and "for i in 0..2" in main
    program = sources.assemble("rust", kept.merged([]), sources.split("rust", "let x = ;", "In[3]"))
    line = program.text.split("\n").index("let x = ;") + 1
    assert program.relabel(f"error --> main.rs:{line}:9", "main.rs") == "error --> In[3]:1:9"


# --------------------------------------------------------------------- on Docker


@dataclass(frozen=True)
class Case:
    kernel: str
    image: str
    hello: str  # prints "hello, world"
    define: str  # defines state: a variable or a function
    use: str  # prints 42 from that state
    syntax_error: str
    runtime_error: str
    read_stdin: str | None  # reads a line and prints "hi <line>"
    loop: str  # prints "started", then loops forever


CASES = [
    Case("c", "gcc",
         '#include <stdio.h>\nprintf("hello, world\\n");',
         "int answer(void) { return 42; }",
         'printf("%d\\n", answer());',
         "int x = ;",
         "int *p = 0;\n*p = 1;",
         'char name[32];\nif (scanf("%31s", name) == 1) printf("hi %s\\n", name);',
         'printf("started\\n");\nwhile (1) {}'),
    Case("cpp", "gcc",
         '#include <iostream>\nstd::cout << "hello, world" << std::endl;',
         "int answer() { return 42; }",
         "std::cout << answer() << std::endl;",
         "std::cout << ;",
         '#include <stdexcept>\nthrow std::runtime_error("boom");',
         '#include <string>\nstd::string name;\nstd::cin >> name;\nstd::cout << "hi " << name << std::endl;',
         'std::cout << "started" << std::endl;\nfor (;;) {}'),
    Case("go", "go",
         'import "fmt"\nfmt.Println("hello, world")',
         "func answer() int { return 42 }",
         "fmt.Println(answer())",
         "x := ",
         'var xs []int\nfmt.Println(xs[3])',
         'import "bufio"\nimport "os"\nline, _ := bufio.NewReader(os.Stdin).ReadString(\'\\n\')\n'
         'fmt.Print("hi " + line)',
         'fmt.Println("started")\nfor {}'),
    Case("rust", "rust",
         'println!("hello, world");',
         "fn answer() -> i32 { 42 }",
         'println!("{}", answer());',
         "let x = ;",
         'let v: Vec<i32> = Vec::new();\nprintln!("{}", v[3]);',
         'let mut line = String::new();\nstd::io::stdin().read_line(&mut line).unwrap();\n'
         'print!("hi {}", line);',
         'println!("started");\nloop {}'),
    Case("ruby", "ruby",
         'puts "hello, world"',
         "answer = 42",
         "puts answer",
         "def broken(",
         "1 / 0",
         'puts "hi #{gets}"',
         'puts "started"\nloop {}'),
    Case("php", "php",
         'echo "hello, world\\n";',
         "$answer = 42;",
         'echo "$answer\\n";',
         'echo "unterminated',
         "intdiv(1, 0);",
         '$line = fgets(STDIN);\necho "hi $line";',
         'echo "started\\n";\nwhile (true) {}'),
    Case("perl", "perl",
         'print "hello, world\\n";',
         "my $answer = 42;",
         'print "$answer\\n";',
         "my $x = ;",
         'die "boom\\n";',
         'my $line = <STDIN>;\nprint "hi $line";',
         'print "started\\n";\n1 while 1;'),
    Case("lua", "lua",
         'print("hello, world")',
         "answer = 42",
         "print(answer)",
         "x = = 1",
         'error("boom")',
         'print("hi " .. io.read())',
         'print("started")\nwhile true do end'),
    Case("sqlite", "wrapper",
         "SELECT 'hello, world' AS greeting;",
         "CREATE TABLE answers(value INTEGER); INSERT INTO answers VALUES (42);",
         "SELECT value FROM answers;",
         "SELEC 1;",
         "INSERT INTO missing_table VALUES (1);",
         None,
         "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n;"),
]


def _text(run) -> str:
    """A run's stdout, or for SQLite its result table's text."""
    return run.stdout or "\n".join(run.results)


def _errors(run) -> list[dict]:
    return [m["content"] for m in run.messages if m["header"]["msg_type"] == "error"]


def _assert_error(run) -> None:
    content = run.reply["content"]
    assert run.status == "error", run.reply
    assert content["ename"] and content["evalue"] and content["traceback"], content
    assert [e["ename"] for e in _errors(run)] == [content["ename"]]


@pytest.fixture(scope="module")
def wrapper_gateway(docker_engine, tmp_path_factory):
    """One Docker gateway for all the language tests (kernels start in about 2 s)."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("gateway"), "--kernels=docker").start()
    yield gateway
    gateway.stop()
    gateway.cleanup()
    assert "Traceback" not in gateway.log(), gateway.log()


def _require_image(engine: docker.DockerClient, name: str) -> None:
    from kernelgate.images import ImageBuilder

    reference = ImageBuilder().reference(name)
    try:
        engine.images.get(reference)
    except docker.errors.ImageNotFound:
        problem = f"image {reference} not built (run: kernelgate images build {name})"
        require(problem)


@pytest.mark.parametrize("case", CASES, ids=[c.kernel for c in CASES])
async def test_language(wrapper_gateway, docker_engine, case: Case):
    _require_image(docker_engine, case.image)
    client = wrapper_gateway.client()
    kernel = await client.start_kernel(case.kernel)
    ws = await client.connect(kernel["id"])
    try:
        hello = await ws.execute(case.hello)
        assert hello.status == "ok", hello.reply
        assert "hello, world" in _text(hello)

        assert (await ws.execute(case.define)).status == "ok"
        used = await ws.execute(case.use)
        assert used.status == "ok", used.reply
        assert "42" in _text(used).split(), used.messages

        _assert_error(await ws.execute(case.syntax_error))
        _assert_error(await ws.execute(case.runtime_error))

        if case.read_stdin is not None:
            asked = await ws.execute(case.read_stdin, stdin=["ada"])
            assert asked.status == "ok", asked.reply
            assert "hi ada" in asked.stdout

        msg_id = await ws.send("shell", "execute_request", {
            "code": case.loop, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True,
        })
        if case.kernel != "sqlite":  # output streams while the program runs
            while True:
                msg = await ws.recv(60)
                if msg["parent_header"].get("msg_id") == msg_id and msg["header"]["msg_type"] == "stream":
                    assert "started" in msg["content"]["text"]
                    break
        else:
            await asyncio.sleep(1)
        response = await client.request("POST", f"/api/kernels/{kernel['id']}/interrupt")
        assert response.status == 204
        stopped = await ws.collect(msg_id, timeout=30)
        _assert_error(stopped)
        assert stopped.reply["content"]["ename"] == "KeyboardInterrupt"

        again = await ws.execute(case.use)  # the kernel, and the state, survive the interrupt
        assert again.status == "ok", again.reply
        assert "42" in _text(again).split(), again.messages
    finally:
        ws.close()
        await client.request("DELETE", f"/api/kernels/{kernel['id']}")
