"""`tools/pip_config_for_uv.py`: uv gets the package sources pip is set up with."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tools.pip_config_for_uv import parse_pip_config_list
from tools.pip_config_for_uv import uv_environment

pytestmark = pytest.mark.backend_independent

SCRIPT = REPO_ROOT / "tools" / "pip_config_for_uv.py"


def test_environment_wins_over_install_over_global():
    text = "\n".join([
        "global.index-url='https://global.example/simple'",
        "install.index-url='https://install.example/simple'",
        "global.find-links='/global/wheels'",
        ":env:.find-links='/env/wheels'",
        "install.constraint='/install/c.txt'",
        "download.index-url='https://other-command.example/simple'",
        "global.timeout='60'",
        "not a setting line",
    ])
    assert parse_pip_config_list(text) == {
        "index-url": "https://install.example/simple",
        "find-links": "/env/wheels",
        "constraint": "/install/c.txt",
        "timeout": "60",
    }
    # Same precedence whatever order pip lists the sections in.
    reordered = "\n".join(reversed(text.splitlines()))
    assert parse_pip_config_list(reordered) == parse_pip_config_list(text)


def test_each_pip_setting_maps_to_its_uv_variable(tmp_path):
    wheels, other, index = (tmp_path / "wheels", tmp_path / "more",
                            tmp_path / "simple")
    for folder in (wheels, other, index):
        folder.mkdir()
    settings = {
        "index-url": "https://mirror.example/simple",
        "extra-index-url": f"https://extra.example/simple file://{index}",
        "find-links": f"{wheels}\n{other}",
        "constraint": "/etc/c1.txt /etc/c2.txt",
        "trusted-host": "mirror.example extra.example",
        "cert": "/etc/ssl/company.pem",
        "client-cert": "/etc/ssl/me.pem",
        "no-index": "true",
        "timeout": "60",  # nothing to map
    }
    assert uv_environment(settings, {}) == {
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
        "UV_INDEX": f"https://extra.example/simple file://{index}",
        "UV_INDEX_STRATEGY": "unsafe-best-match",
        "UV_FIND_LINKS": f"{wheels},{other}",
        "UV_CONSTRAINT": "/etc/c1.txt /etc/c2.txt",
        "UV_INSECURE_HOST": "mirror.example extra.example",
        "SSL_CERT_FILE": "/etc/ssl/company.pem",
        "SSL_CLIENT_CERT": "/etc/ssl/me.pem",
        "UV_NO_INDEX": "1",
    }


def test_missing_local_locations_are_skipped_like_pip_does(tmp_path):
    settings = {
        "extra-index-url": f"file://{tmp_path}/absent/simple",
        "find-links": f"{tmp_path}/absent https://wheels.example/",
        "no-index": "false",
    }
    assert uv_environment(settings, {}) == {
        "UV_FIND_LINKS": "https://wheels.example/",
    }


def test_uv_settings_already_made_are_kept():
    settings = {"index-url": "https://mirror.example/simple",
                "extra-index-url": "https://extra.example/simple",
                "cert": "/etc/ssl/company.pem"}
    environ = {"UV_DEFAULT_INDEX": "https://mine.example/simple",
               "UV_INDEX_STRATEGY": "first-index",
               "SSL_CERT_FILE": "/my.pem"}
    assert uv_environment(settings, environ) == {
        "UV_INDEX": "https://extra.example/simple",
    }


def test_script_exports_what_bash_then_sees(tmp_path):
    # pip's own reading of PIP_* variables (config files switched off), the
    # printed lines evaluated by bash as the installers do.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    environ = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_", "SSL_"))
    }
    environ.update(PIP_CONFIG_FILE=os.devnull,
                   PIP_INDEX_URL="https://mirror.example/simple",
                   PIP_FIND_LINKS=str(wheels),
                   PIP_CONSTRAINT="/etc/c.txt",
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = (f'settings=$("{sys.executable}" "{SCRIPT}") && '
               'eval "$settings" && env')
    result = subprocess.run(["bash", "-c", command], env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines()
                if line.startswith(("UV_", "SSL_")))
    assert seen == {
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
        "UV_FIND_LINKS": str(wheels),
        "UV_CONSTRAINT": "/etc/c.txt",
    }
