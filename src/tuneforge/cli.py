"""The ``tuneforge`` command: parses arguments, calls the library, prints. Nothing else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from tuneforge import __version__
from tuneforge.errors import INTERRUPTED_EXIT, UserError
from tuneforge.training.distributed import is_main_process, quiet_other_ranks

if TYPE_CHECKING:
    from tuneforge.config.deploy import DeployConfig
    from tuneforge.data import Message
    from tuneforge.infer import ResolvedModel
    from tuneforge.infer.tool_chat import ReplyStream
    from tuneforge.training.stages import TrainResult

logger = logging.getLogger("tuneforge")

# Generation flags of chat and api, as keyword arguments of `generation_settings`.
GENERATION_FLAGS = ("temperature", "top_p", "max_new_tokens", "repetition_penalty")

TRAINED_FOLDER = "a training output (LoRA adapter or full model) or a merged export folder"
BUG_REPORT = "This is a bug in tuneforge; please report it with the traceback above."
# Each problem is one line of output, even when it quotes a name or value that holds a line
# break (a dataset name, a role read from a data file): those are shown escaped.
LINE_BREAKS = str.maketrans(
    {char: repr(char)[1:-1] for char in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}
)


def _train(args: argparse.Namespace) -> int:
    from tuneforge import load_config, train
    from tuneforge.training.launch import launch_training, resolve_launch

    launch = resolve_launch(
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
    )
    cfg = load_config(args.config, args.overrides)
    if launch.torchrun:
        argv = [
            *(["--quiet"] if args.quiet else []),
            "train",
            args.config,
            *args.overrides,
            *(["--force"] if args.force else []),
        ]
        return launch_training(cfg, launch, argv)
    result = train(cfg, force=args.force)
    if not result.completed:
        if is_main_process():
            print(interrupted_message(result, args.config), file=sys.stderr)
        return INTERRUPTED_EXIT
    if not is_main_process():
        return 0
    for key, value in sorted(result.metrics.items()):
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    print(f"Result in {result.output_dir}")
    return 0


def interrupted_message(result: TrainResult, config: str) -> str:
    """The one line an interrupted run ends with: where it stopped and how to continue."""
    if result.resume_from is None:
        return (
            f"tuneforge: interrupted at step {result.step} of {result.max_steps} before a "
            f"checkpoint was saved; nothing to resume in {result.output_dir}"
        )
    return (
        f"tuneforge: interrupted at step {result.step} of {result.max_steps}; checkpoint "
        f"saved in {result.resume_from}; continue with: tuneforge train {config} "
        f"resume_from_checkpoint=true"
    )


def _eval(args: argparse.Namespace) -> int:
    from tuneforge import evaluate, load_config

    cfg = load_config(args.config, [*args.overrides, "do_train=false"])
    if not args.forgetting or cfg.data.eval_dataset or cfg.data.val_size:
        report = evaluate(cfg, args.adapter, args.out, reward_model=args.reward_model)
        print(report.text)
        print(f"Results in {report.output_dir}")
    if args.forgetting:
        from tuneforge.monitor.forgetting import check_adapter

        result = check_adapter(cfg, args.adapter, args.out)
        print(result.table())
        print(f"Forgetting check in {result.path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from tuneforge.monitor.report import write_report

    print(f"Report written to {write_report(args.run)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from tuneforge.monitor.compare import write_comparison

    print(f"Comparison written to {write_comparison(args.runs, args.out)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tuneforge import load_config
    from tuneforge.eval.evaluate import predict

    cfg = load_config(args.config, [*args.overrides, "do_train=false"])
    print(f"Predictions in {predict(cfg, args.adapter, args.input, args.out, args.column)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from tuneforge import load_config, plan

    print(plan(load_config(args.config, args.overrides), with_data=not args.no_data).text())
    return 0


def _data(args: argparse.Namespace) -> int:
    from tuneforge import load_config
    from tuneforge.models import load_tokenizer

    if args.action == "clean" and not args.out:
        raise UserError("data clean: --out is required (the .jsonl file to write)")
    cfg = load_config(args.config, args.overrides)
    tokenizer = load_tokenizer(cfg.model)
    if args.action == "inspect":
        from tuneforge.data.inspect import inspect_datasets

        print(inspect_datasets(cfg, tokenizer).text())
        return 0
    from tuneforge.data.clean import clean_datasets

    report = clean_datasets(
        cfg,
        tokenizer,
        args.out,
        dedupe=args.dedupe,
        min_tokens=args.min_tokens,
        max_tokens=args.max_tokens,
    )
    print(report.text())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from tuneforge import load_config, sweep
    from tuneforge.planning.sweep import parse_grid

    grid = parse_grid(args.lr, args.batch, args.grid)
    cfg = load_config(args.config, args.overrides)
    folder = args.out or f"{cfg.train.output_dir}-sweep"
    result = sweep(cfg, grid, folder, max_steps=args.max_steps, max_tokens=args.max_tokens)
    print(result.table())
    return 0


def _webui(args: argparse.Namespace) -> int:
    from tuneforge.webui.app import launch

    launch(host=args.host, port=args.port, lang=args.lang, share=args.share, password=args.password)
    return 0


def _model(args: argparse.Namespace, settings: DeployConfig[Any]) -> ResolvedModel:
    """chat, api and export: the --adapter folder, the run keys of the optional export or
    inference YAML (used instead of the folder's saved config) or else the key=value
    overrides on top of the folder's config, and, where the command has them, the generation
    flags."""
    from tuneforge.infer import generation_settings, resolve_model

    model = resolve_model(args.adapter, settings.run, settings.overrides)
    flags = {name: getattr(args, name, None) for name in GENERATION_FLAGS}
    gen = generation_settings(model.config.generation, **flags)
    if gen is model.config.generation:
        return model
    return model.with_settings(**gen.model_dump(exclude_unset=True))


def _inference(args: argparse.Namespace) -> ResolvedModel:
    """chat and api: the model an inference YAML (or folder) names, refused with one line
    when this machine cannot run the YAML's infer_backend."""
    from tuneforge.config.deploy import check_backend, read_infer_config

    settings = read_infer_config(args.config, args.overrides)
    check_backend(settings.args, settings.origin)
    return _model(args, settings)


def _chat(args: argparse.Namespace) -> int:
    from tuneforge import chat
    from tuneforge.infer.tool_chat import ReplyStream, observation, read_tools_file

    tools = read_tools_file(args.tools) if args.tools else None
    model = _inference(args)
    session, gen = chat(model), model.config.generation
    logger.info("generation: %s", gen.model_dump())
    system: list[Message] = [{"role": "system", "content": args.system}] if args.system else []
    history = list(system)
    if args.query:
        _show_reply(
            ReplyStream(session, [*history, {"role": "user", "content": args.query}], gen, tools)
        )
        return 0
    print("Type a message; /clear forgets the conversation, /exit quits, Ctrl-C stops a reply.")
    if tools:
        print("A call is shown as → name(arguments); type the tool's result at observation>.")
    while True:
        try:
            text = input("\nYou: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text == "/exit":
            return 0
        if text == "/clear":
            history = list(system)
            print("(conversation cleared)")
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        while True:
            print("Assistant: ", end="", flush=True)
            stream = ReplyStream(session, history, gen, tools)
            calls = _show_reply(stream)
            history += stream.messages
            if not calls:
                break
            for call in calls:
                try:
                    result = input("observation> " if len(calls) == 1 else f"{call} observation> ")
                except (EOFError, KeyboardInterrupt):
                    print()
                    return 0
                if result.strip() == "/exit":
                    return 0
                history.append(observation(result.strip()))


def _show_reply(stream: ReplyStream) -> list[str]:
    """Print a reply as it streams, a call as a call, and return the names of the functions
    it calls (for the user to give their results)."""
    from tuneforge.infer.tool_chat import call_text

    try:
        for piece in stream:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print(" [stopped]", end="")
    parsed, rest = stream.reply, stream.unshown.rstrip()
    if rest or stream.shown or not parsed.calls:  # a call alone goes on the reply's line
        print(rest)
    if parsed.error:
        print(f"(not read as a tool call: {parsed.error})")
    for call in parsed.calls:
        print(f"→ {call_text(call)}")
    return [call.name for call in parsed.calls]


def _api(args: argparse.Namespace) -> int:
    from tuneforge.serving.api import ServerSettings, serve, served_name

    model = _inference(args)
    settings = ServerSettings(
        model_name=args.model_name or served_name(model),
        api_key=args.api_key,
        no_auth=args.no_auth,
        max_batch=args.max_batch,
        max_waiting=args.max_waiting,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens=args.max_tokens,
        max_request_bytes=args.max_request_bytes,
    )
    serve(model, settings, host=args.host, port=args.port)
    return 0


def _export(args: argparse.Namespace) -> int:
    from tuneforge import export
    from tuneforge.config.deploy import read_export_config

    settings = read_export_config(args.config, args.overrides, export_dir=args.out)
    wanted = settings.args
    result = export(
        _model(args, settings),
        cast(str, wanted.export_dir),  # read_export_config refuses a config without one
        fmt=args.format,
        quant=args.quant,
        overwrite=args.overwrite,
        max_shard_size=wanted.max_shard_bytes,
        legacy_format=wanted.export_legacy_format,
        device=wanted.export_device,
    )
    for check in result.checks:
        print(check)
    print(f"Exported to {result.path}")
    if result.modelfile is not None:
        print(f"Ollama: ollama create {result.path.stem} -f {result.modelfile}")
    if not result.ok:
        print(
            f"tuneforge: error: the export in {result.path} does not behave like the model it "
            f"came from (see the checks above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _expand(args: argparse.Namespace) -> int:
    from tuneforge.models.expand import expand_blocks

    result = expand_blocks(args.model, args.out, args.num_expand)
    print(
        f"Expanded model ({result.layers_before} -> {result.layers_after} layers, new: "
        f"{', '.join(map(str, result.inserted))}) in {result.output_dir}"
    )
    print(
        f"Train only the new layers with: model_name_or_path: {result.output_dir}, "
        f"finetuning_type: freeze (or lora), use_llama_pro: true, "
        f"freeze_trainable_layers: {result.num_expand}"
    )
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value


def _add_model_arguments(parser: argparse.ArgumentParser, adapter_help: str) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="optional YAML config (model, template, generation); LLaMA-Factory's "
        "inference YAMLs (chat, api) and merge YAMLs (export) too",
    )
    parser.add_argument("overrides", nargs="*", help="key=value pairs, e.g. template=chatml")
    parser.add_argument("--adapter", help=adapter_help)


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature",
        type=float,
        help="0 = greedy (the default unless the config says do_sample: true); above 0 samples",
    )
    parser.add_argument("--top-p", type=float, help="nucleus sampling share, (0, 1]")
    parser.add_argument("--max-new-tokens", type=_positive, help="longest reply in tokens")
    parser.add_argument("--repetition-penalty", type=float, help="above 1 discourages repeats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneforge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model from a YAML config")
    train.add_argument("config", help="YAML file with LLaMA-Factory style keys")
    train.add_argument("overrides", nargs="*", help="key=value pairs that override the file")
    train.add_argument(
        "--nproc",
        type=int,
        help="data-parallel processes on this machine (one per GPU, or CPU cores; "
        "env NPROC_PER_NODE); or start tuneforge with torchrun",
    )
    # Several machines: strings, so that every bad value is reported at once with the others.
    train.add_argument(
        "--nnodes", help="machines of a multi-machine run, each running this command (env NNODES)"
    )
    train.add_argument("--node-rank", help="this machine's number, 0 to nnodes-1 (env NODE_RANK)")
    train.add_argument(
        "--master-addr", help="IP address or host name of machine 0 (env MASTER_ADDR)"
    )
    train.add_argument(
        "--master-port", help="free port on machine 0, default 29500 (env MASTER_PORT)"
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="train even when the memory plan says the run will not fit",
    )
    train.set_defaults(func=_train)

    plan = sub.add_parser(
        "plan",
        help="memory needed (per component, against the device), "
        "what would make it fit, hyper-parameter advice; no training",
    )
    plan.add_argument("config", help="YAML config, as for train")
    plan.add_argument("overrides", nargs="*", help="key=value pairs that override the file")
    plan.add_argument("--no-data", action="store_true", help="skip reading the datasets")
    plan.set_defaults(func=_plan)

    data = sub.add_parser(
        "data", help="inspect the configured datasets, or write a cleaned copy of them"
    )
    data.add_argument("action", choices=("inspect", "clean"))
    data.add_argument("config", help="YAML config naming the datasets and the model")
    data.add_argument("overrides", nargs="*", help="key=value pairs that override the file")
    data.add_argument("--out", help="clean: the .jsonl file to write (inputs never change)")
    data.add_argument(
        "--dedupe",
        choices=("normalized", "exact", "none"),
        default="normalized",
        help="clean: drop repeats ignoring case/spaces/punctuation (default), "
        "exact repeats only, or none",
    )
    data.add_argument("--min-tokens", type=_positive, help="clean: drop shorter samples")
    data.add_argument("--max-tokens", type=_positive, help="clean: drop longer samples")
    data.set_defaults(func=_data)

    sweep = sub.add_parser(
        "sweep",
        help="short runs over learning rate x batch size (x any "
        "key), ranked by validation result; resumes where it stopped",
    )
    sweep.add_argument("config", help="YAML config, as for train")
    sweep.add_argument("overrides", nargs="*", help="key=value pairs that override the file")
    sweep.add_argument("--lr", help="learning rates, e.g. 5e-5,1e-4,2e-4")
    sweep.add_argument("--batch", help="per-device batch sizes, e.g. 2,4,8")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="any other key to vary, e.g. lora_rank=8,16 (repeatable)",
    )
    budget = sweep.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-steps", type=_positive, help="optimizer steps per run")
    budget.add_argument(
        "--max-tokens",
        type=_positive,
        help="training tokens per run (steps = tokens / (batch x accumulation x cutoff_len))",
    )
    sweep.add_argument("--out", help="folder of the runs (default: <output_dir>-sweep)")
    sweep.set_defaults(func=_sweep)

    chat = sub.add_parser("chat", help="talk to the base model, an adapter or a trained folder")
    _add_model_arguments(chat, TRAINED_FOLDER)
    _add_generation_arguments(chat)
    chat.add_argument("--query", help="ask one question, print the answer and exit")
    chat.add_argument("--system", help="system prompt for this conversation")
    chat.add_argument(
        "--tools",
        metavar="FILE",
        help="a JSON list of tool schemas the model may call; you type each tool's result",
    )
    chat.set_defaults(func=_chat)

    api = sub.add_parser("api", help="serve the model over an OpenAI-compatible HTTP API")
    _add_model_arguments(api, TRAINED_FOLDER)
    _add_generation_arguments(api)
    api.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: "
        "127.0.0.1, this machine only; 0.0.0.0 for every interface)",
    )
    api.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    api.add_argument(
        "--api-key",
        default=os.environ.get("TUNEFORGE_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $TUNEFORGE_API_KEY); "
        "an empty key is refused",
    )
    api.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without a key, with a "
        "warning (without a key or this flag only a loopback --host is allowed)",
    )
    api.add_argument("--model-name", help="the model id clients see (default: the folder name)")
    api.add_argument(
        "--max-batch",
        type=_positive,
        default=8,
        help="requests (choices) generated together in one batch (default: 8)",
    )
    api.add_argument(
        "--max-waiting",
        type=_positive,
        default=32,
        help="requests that may wait for a batch; more are answered 429 (default: 32)",
    )
    api.add_argument(
        "--max-prompt-tokens",
        type=_positive,
        default=4096,
        help="longest prompt accepted, in tokens (default: 4096)",
    )
    api.add_argument(
        "--max-tokens",
        type=_positive,
        default=2048,
        help="most tokens one request may ask for (default: 2048)",
    )
    api.add_argument(
        "--max-request-bytes",
        type=_positive,
        default=1 << 20,
        help="largest request body accepted; larger ones get 413 (default: 1048576, 1 MiB)",
    )
    api.set_defaults(func=_api)

    export = sub.add_parser(
        "export",
        help="merge a LoRA adapter into its base model; save a "
        "Hugging Face folder or a GGUF file (llama.cpp, Ollama)",
    )
    _add_model_arguments(export, "the training output to export (LoRA adapter or full model)")
    export.add_argument(
        "--out", help="folder (hf) or .gguf file to write (default: the YAML's export_dir)"
    )
    export.add_argument(
        "--format", choices=("hf", "gguf"), help="default: gguf when --out ends in .gguf, else hf"
    )
    export.add_argument(
        "--quant",
        choices=("f32", "f16", "q8_0", "q5_k_m", "q4_k_m"),
        help="GGUF weight type (default: f16); q5_k_m and q4_k_m are made by llama.cpp "
        "(pip install 'tuneforge[gguf-quant]')",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.set_defaults(func=_export)

    expand = sub.add_parser(
        "expand",
        help="LLaMA Pro: insert zero-output copies of decoder layers (same outputs as "
        "before) to train with use_llama_pro",
    )
    expand.add_argument("--model", required=True, help="model folder, alias or hub id")
    expand.add_argument(
        "--num-expand",
        type=_positive,
        required=True,
        help="layers to insert, one after every (layers / N)-th; must divide the layer count",
    )
    expand.add_argument("--out", required=True, help="new (or empty) folder to save it in")
    expand.set_defaults(func=_expand)

    evaluate = sub.add_parser(
        "eval",
        help="score a model on test data: base vs tuned "
        "(generation) or vs a TF-IDF baseline (classification)",
    )
    evaluate.add_argument(
        "config",
        help="YAML config naming the test data (eval_dataset, or "
        "dataset + val_size) and generation settings",
    )
    evaluate.add_argument("overrides", nargs="*", help="key=value pairs, e.g. max_new_tokens=64")
    evaluate.add_argument("--adapter", help="a training output folder: compared with its base")
    evaluate.add_argument(
        "--out",
        help="folder for the predictions and metrics.json (default: <adapter or output_dir>/eval)",
    )
    evaluate.add_argument(
        "--forgetting",
        action="store_true",
        help="also check what general "
        "ability the adapter kept (perplexity and questions, base vs tuned); "
        "alone when the config names no test data",
    )
    evaluate.add_argument(
        "--reward-model",
        help="preference runs: the output folder of a stage rm run that scores the base and "
        "tuned answers (the tuned model's win rate)",
    )
    evaluate.set_defaults(func=_eval)

    report = sub.add_parser(
        "report",
        help="write <run>/report.html: curves, warnings, metrics and config of a training run",
    )
    report.add_argument("run", help="the output_dir of a training run")
    report.set_defaults(func=_report)

    compare = sub.add_parser(
        "compare", help="one HTML page comparing runs: curves, metrics, config differences"
    )
    compare.add_argument(
        "runs", nargs="+", help="output_dirs of runs, or a folder of runs (a sweep)"
    )
    compare.add_argument(
        "--out", help="the HTML file to write (default: compare.html in the runs' common folder)"
    )
    compare.set_defaults(func=_compare)

    predict = sub.add_parser(
        "predict",
        help="label a file of texts with a trained classifier, or score answers with a "
        "reward model",
    )
    predict.add_argument(
        "config", help="the YAML config of the cls or rm run (batch size, cutoff_len)"
    )
    predict.add_argument(
        "overrides", nargs="*", help="key=value pairs, e.g. per_device_eval_batch_size=32"
    )
    predict.add_argument(
        "--adapter", required=True, help="the output folder of a stage cls or rm run"
    )
    predict.add_argument(
        "--input",
        required=True,
        help="JSON/JSONL/CSV/Parquet/TXT file of texts (cls), or of answered conversations "
        "(rm: alpaca, sharegpt or openai rows)",
    )
    predict.add_argument(
        "--out", required=True, help="JSONL file to write labels and probabilities (or rewards) to"
    )
    predict.add_argument("--column", default="text", help="the column holding the texts")
    predict.set_defaults(func=_predict)

    webui = sub.add_parser(
        "webui", help="the browser UI: train, evaluate, chat and export (needs the 'webui' extra)"
    )
    webui.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    webui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: "
        "127.0.0.1, this machine only; 0.0.0.0 for every interface)",
    )
    webui.add_argument(
        "--lang",
        choices=("en", "zh"),
        help="page language (default: from the locale); switchable on the page",
    )
    webui.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    webui.add_argument(
        "--password",
        default=os.environ.get("TUNEFORGE_WEBUI_PASSWORD"),
        help="ask for this password, any user name (default: $TUNEFORGE_WEBUI_PASSWORD)",
    )
    webui.set_defaults(func=_webui)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse with overrides allowed before and after flags.

    argparse fills a positional list only up to the first flag, so the ``key=value`` words
    after one (``eval cfg.yaml --adapter DIR key=value``) come back unrecognised; they are
    overrides too. Where the config file is optional (chat, api, export), the first word is
    the config unless it has an ``=``."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    words = [word for word in extras if not word.startswith("-")]
    if len(words) < len(extras) or (words and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command in ("chat", "api", "export"):
        words = [*([args.config] if args.config else []), *args.overrides, *words]
        args.config = words.pop(0) if words and "=" not in words[0] else None
        args.overrides = words
    elif words:
        args.overrides = [*args.overrides, *words]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    if not is_main_process():  # rank 0 speaks for all processes of a multi-process run
        level = logging.ERROR
        quiet_other_ranks()
    logging.basicConfig(level=level, format="[tuneforge] %(levelname)s %(message)s")
    logging.getLogger("tuneforge").setLevel(level)
    # bitsandbytes warns on import, on AVX512-BF16 CPUs, that an optional kernel from the
    # Hugging Face hub is missing; it falls back to its own, so the line only confuses.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except UserError as exc:
        if is_main_process():  # the other processes met the same problem; say it once
            for line in exc.lines:
                print(f"tuneforge: error: {line.translate(LINE_BREAKS)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception:  # noqa: BLE001 - anything else is a bug: show it and ask for a report
        traceback.print_exc()
        print(f"tuneforge: {BUG_REPORT}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
