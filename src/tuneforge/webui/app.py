"""``tuneforge webui``: the page with its four tabs, and the server that shows it.

The server listens on 127.0.0.1 unless asked otherwise; a password protects it when it is
reachable from other machines. Leaving the server (Ctrl-C) asks a running training job to
save a checkpoint and stop, so it can be resumed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

from tuneforge.config.scale import missing_extra
from tuneforge.errors import UserError
from tuneforge.webui.locales import LANGUAGES, default_language, text
from tuneforge.webui.runner import TrainingRunner

logger = logging.getLogger(__name__)

# Seconds between two looks at the training job's files.
REFRESH_S = 1.0

CSS = """
.tf-field-error { color: #b42318; font-size: 0.85em; }
.tf-field-error p { margin: 0.2em 0; }
#tf-progress progress { width: 100%; height: 1.1em; }
#tf-progress .tf-state { font-weight: 600; margin-bottom: 0.3em; }
#tf-progress .tf-details { font-size: 0.9em; margin-top: 0.2em; }
#tf-progress .tf-state-failed { color: #b42318; }
#tf-plan-report textarea, #tf-console textarea, #tf-eval-report textarea {
  font-family: ui-monospace, monospace;
}
"""


def build_app(lang: str, runner: TrainingRunner | None = None) -> Any:
    """The page, in `lang` until the visitor switches; `runner` holds the training job (one
    per server)."""
    import gradio as gr

    from tuneforge.webui.chat_tab import ChatHolder, build_chat_tab
    from tuneforge.webui.eval_tab import build_eval_tab
    from tuneforge.webui.export_tab import build_export_tab
    from tuneforge.webui.train_tab import build_train_tab
    from tuneforge.webui.widgets import Texts

    runner = runner or TrainingRunner()
    texts = Texts(lang)
    with gr.Blocks(title=text("app.title", lang)) as app:
        with gr.Row(equal_height=True):
            texts.bind(gr.Markdown, value="app.intro")
            language = gr.Radio(
                [(name, code) for code, name in LANGUAGES.items()],
                value=lang,
                label=text("app.language", lang),
                elem_id="tf-language",
                scale=0,
                min_width=220,
            )
        timer = gr.Timer(REFRESH_S)
        with gr.Tabs():
            with texts.bind(_tab("train"), label="tab.train"):
                build_train_tab(texts, language, timer, runner)
            with texts.bind(_tab("evaluate"), label="tab.evaluate"):
                build_eval_tab(texts, language, runner)
            with texts.bind(_tab("chat"), label="tab.chat"):
                build_chat_tab(texts, language, runner, ChatHolder())
            with texts.bind(_tab("export"), label="tab.export"):
                build_export_tab(texts, language, runner)
        language.change(texts.relabel, language, texts.components, show_progress="hidden")
    return app


def _tab(name: str) -> Any:
    import gradio as gr

    return lambda **props: gr.Tab(id=name, elem_id=f"tf-tab-{name}", **props)


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    lang: str | None = None,
    share: bool = False,
    password: str | None = None,
) -> None:
    """Serve the web UI until interrupted."""
    missing = missing_extra("tuneforge webui", "gradio", "webui")
    if missing:
        raise UserError(missing)
    lang = lang or default_language()
    if lang not in LANGUAGES:
        raise UserError(f"--lang {lang}: allowed: {', '.join(LANGUAGES)}")
    if (share or not _is_loopback(host)) and not password:
        logger.warning(
            "The web UI can start training and read files on this machine, and it "
            "is reachable from other machines without a password; add --password"
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own requests, every second
    runner = TrainingRunner()
    app = build_app(lang, runner)
    auth = None if not password else (lambda _user, given: hmac.compare_digest(given, password))
    try:
        app.queue().launch(
            server_name=host,
            server_port=port,
            share=share,
            auth=auth,
            auth_message=text("app.password", lang) if password else None,
            css=CSS,
            footer_links=[],
            show_error=False,
        )
    except OSError as exc:
        raise UserError(
            f"--host {host} --port {port}: cannot listen there (the port is in "
            f"use, or the address is not this machine's); choose another --port"
        ) from exc
    finally:
        runner.stop()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
