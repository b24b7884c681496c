"""Where settings come from: KERNELGATE_* variables, then jupyter_config.py, then the
command line, each winning over the one before (docs/deployment.md)."""

from __future__ import annotations

from kernelgate.app import ServeApp


def configured(monkeypatch, tmp_path, environ: dict, argv: list[str], config_file: str = "") -> ServeApp:
    monkeypatch.chdir(tmp_path)  # no ./jupyter_config.py of the checkout
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    if config_file:
        (tmp_path / "jupyter_config.py").write_text(config_file)
    app = ServeApp()
    app.initialize(argv)
    return app


def test_environment_variables_set_traits_and_aliases(monkeypatch, tmp_path):
    app = configured(monkeypatch, tmp_path, {
        "KERNELGATE_ServeApp__port": "9123",
        "KERNELGATE_ExecuteRateLimit__per_minute": "7",
        "KERNELGATE_BASE_URL": "/gw",
    }, [])
    assert app.port == 9123 and app.base_url == "/gw/"
    assert app.config.ExecuteRateLimit.per_minute == 7


def test_the_command_line_wins_over_the_file_which_wins_over_the_environment(monkeypatch, tmp_path):
    app = configured(monkeypatch, tmp_path,
                     {"KERNELGATE_ServeApp__port": "9001", "KERNELGATE_ServeApp__ip": "127.0.0.2"},
                     ["--ServeApp.ip=127.0.0.3"],
                     "c.ServeApp.port = 9002\nc.ServeApp.ip = '127.0.0.4'\n")
    assert app.port == 9002  # file over environment
    assert app.ip == "127.0.0.3"  # command line over both


def test_development_mode_has_no_execution_rate_limit_unless_configured(monkeypatch, tmp_path):
    assert configured(monkeypatch, tmp_path, {}, ["--no-auth"])._execute_limit(True).per_minute == 0
    app = configured(monkeypatch, tmp_path, {}, ["--no-auth", "--ExecuteRateLimit.per_minute=5"])
    assert app._execute_limit(True).per_minute == 5
    assert configured(monkeypatch, tmp_path, {}, [])._execute_limit(False).per_minute == 600
