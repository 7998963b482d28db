"""The [render] section: default_step, max_points and [[render.schema]] rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from statsyard.config import load_config, render_config
from statsyard.exceptions import ConfigError
from statsyard.render import RenderSettings


def test_schema_tables_load_from_toml_in_order(tmp_path: Path) -> None:
    """[[render.schema]] tables become (pattern, seconds) rules, first match wins."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[render]\ndefault_step = "2m"\nmax_points = 1000\n'
        '[[render.schema]]\npattern = "^carbon\\\\."\nstep = "10s"\n'
        '[[render.schema]]\npattern = "cpu"\nstep = 30\n',
        encoding="utf-8",
    )
    config = load_config(path, environ={})
    assert config.render.schema == (("^carbon\\.", 10), ("cpu", 30))
    assert (config.render.default_step, config.render.max_points) == (120, 1000)
    settings = RenderSettings.from_config(config)
    assert settings.step_for("carbon.cpu") == 10
    assert settings.step_for("host.cpu") == 30
    assert settings.step_for("mem") == 120
    assert settings.default_entity == "graphite"
    shown = render_config(config)
    rules = '{ pattern = "^carbon\\\\.", step = 10 }, { pattern = "cpu", step = 30 }'
    assert f"schema = [{rules}]" in shown
    reloaded = tmp_path / "shown.toml"
    reloaded.write_text(shown, encoding="utf-8")
    assert load_config(reloaded, environ={}).render == config.render


def test_schema_from_the_environment_and_flags() -> None:
    """REGEX=STEP pairs separated by ';' (the last '=' splits)."""
    config = load_config(
        None,
        environ={"STATSYARD_RENDER_SCHEMA": "a=b=1m; ^x\\.=10s"},
        flags={"render.default_step": "300"},
    )
    assert config.render.schema == (("a=b", 60), ("^x\\.", 10))
    assert config.render.default_step == 300
    assert config.source("render", "default_step") == "flag --render-default-step"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[render]\ndefault_step = "0s"\n', "render.default_step"),
        ('[render]\ndefault_step = "fast"\n', "a positive duration"),
        ("[render]\nmax_points = 0\n", "render.max_points"),
        ('[[render.schema]]\npattern = "("\nstep = "10s"\n', "bad regex '('"),
        ('[[render.schema]]\npattern = "a"\nstep = "1x"\n', "render.schema"),
        ('[[render.schema]]\npattern = "a"\n', "render.schema"),
        ('[[render.schema]]\npattern = "a"\nstep = "1m"\nextra = 1\n', "render.schema"),
        ('[render]\nschema = "a=1m"\n', "render.schema"),
    ],
)
def test_bad_render_settings_are_reported_clearly(
    tmp_path: Path, toml: str, problem: str
) -> None:
    """Bad steps, regexes and tables stop start-up with one line naming them."""
    path = tmp_path / "c.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert problem in str(info.value)
