"""The translation table: every word in both languages, every form field labelled and hinted."""

from __future__ import annotations

import pytest

from tuneforge.webui.form import FIELDS
from tuneforge.webui.locales import LANGUAGES, TEXTS, default_language, text


def test_every_key_has_every_language():
    missing = [
        f"{key} ({lang})"
        for key, entry in TEXTS.items()
        for lang in LANGUAGES
        if not entry.get(lang, "").strip()
    ]
    extra = [
        f"{key} ({lang})" for key, entry in TEXTS.items() for lang in entry if lang not in LANGUAGES
    ]
    assert missing == [] and extra == []


def test_every_form_field_has_a_label_and_a_hint():
    needed = [f"{kind}.{key}" for key in FIELDS for kind in ("field", "hint")]
    assert [key for key in needed if key not in TEXTS] == []


def test_chinese_differs_from_english_where_it_should():
    assert text("field.learning_rate", "zh") == "学习率"
    assert text("tab.train", "en") == "Train" and text("tab.train", "zh") == "训练"
    # hints of config fields reuse the schema's description as the English source
    assert text("hint.lora_rank", "en").startswith("LoRA rank r; 8-64 is typical.")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
    ],
)
def test_default_language_follows_the_locale(environ, expected):
    assert default_language(environ) == expected


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_the_page_builds_from_the_table_in_each_language(lang):
    """Building the page looks up every key it uses; a key missing from the table raises."""
    pytest.importorskip("gradio")
    from tuneforge.webui.app import build_app

    app = build_app(lang)
    labels = {getattr(block, "label", None) for block in app.blocks.values()}
    assert text("field.learning_rate", lang) in labels
    assert text("tab.export", lang) in labels
