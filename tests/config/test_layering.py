"""The config layer stands on its own: validating a config loads no ML library, and the
names it accepts are the names the higher layers implement."""

from __future__ import annotations

import subprocess
import sys

from tuneforge.config.choices import TEMPLATE_NAMES, TOOL_FORMAT_NAMES
from tuneforge.data.templates import NAMED_TEMPLATES
from tuneforge.data.tools import TOOL_FORMATS


def test_importing_the_config_package_does_not_import_torch():
    probe = (
        "import sys, tuneforge.config; "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_template_name_the_config_accepts_has_a_template():
    assert tuple(NAMED_TEMPLATES) == TEMPLATE_NAMES


def test_every_tool_format_name_the_config_accepts_is_a_format():
    assert set(TOOL_FORMAT_NAMES.values()) == set(TOOL_FORMATS)
