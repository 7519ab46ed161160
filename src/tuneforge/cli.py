"""The ``tuneforge`` command: parses arguments, calls the library, prints. Nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from tuneforge import __version__
from tuneforge.errors import UserError

logger = logging.getLogger("tuneforge")

BUG_REPORT = "This is a bug in tuneforge; please report it with the traceback above."


def _train(args: argparse.Namespace) -> int:
    from tuneforge import load_config, train

    result = train(load_config(args.config, args.overrides))
    for key, value in sorted(result.metrics.items()):
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    print(f"Result in {result.output_dir}")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from tuneforge import load_config
    from tuneforge.serve import chat_config, load_chat_model

    cfg = chat_config(args.adapter, load_config(args.config, args.overrides) if args.config else None)
    if args.overrides and not args.config:
        cfg = load_config({**cfg.flat(only_set=True), "do_train": False}, args.overrides)
    session = load_chat_model(cfg)
    history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    if args.query:
        print(session.reply(history + [{"role": "user", "content": args.query}], cfg.generation))
        return 0
    print("Type a message; /clear forgets the conversation, /exit quits.")
    while True:
        try:
            text = input("\nYou: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text == "/exit":
            return 0
        if text == "/clear":
            history = history[:1] if args.system else []
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        print("Assistant: ", end="", flush=True)
        pieces = []
        for piece in session.stream(history, cfg.generation):
            print(piece, end="", flush=True)
            pieces.append(piece)
        print()
        history.append({"role": "assistant", "content": "".join(pieces).strip()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneforge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model from a YAML config")
    train.add_argument("config", help="YAML file with LLaMA-Factory style keys")
    train.add_argument("overrides", nargs="*", help="key=value pairs that override the file")
    train.set_defaults(func=_train)

    chat = sub.add_parser("chat", help="talk to the base model, an adapter or a trained folder")
    chat.add_argument("config", nargs="?", help="optional YAML config (model, template, generation)")
    chat.add_argument("overrides", nargs="*", help="key=value pairs, e.g. temperature=0.3")
    chat.add_argument("--adapter", help="a training output folder (LoRA adapter or full model)")
    chat.add_argument("--query", help="ask one question, print the answer and exit")
    chat.add_argument("--system", help="system prompt for this conversation")
    chat.set_defaults(func=_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "chat" and args.config and "=" in args.config:
        args.overrides, args.config = [args.config, *args.overrides], None
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="[tuneforge] %(levelname)s %(message)s")
    logging.getLogger("tuneforge").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except UserError as exc:
        for line in exc.lines:
            print(f"tuneforge: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - anything else is a bug: show it and ask for a report
        traceback.print_exc()
        print(f"tuneforge: {BUG_REPORT}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
