"""The browser UI (``tuneforge webui``): Train, Evaluate, Chat and Export tabs in English and
Chinese.

The UI only builds flat configs and calls the library; training runs as a ``tuneforge train``
subprocess so that it outlives a closed browser tab. Gradio is imported by `tuneforge.webui.app`
and the tab modules, never by this package, so ``import tuneforge`` does not need it.
"""
