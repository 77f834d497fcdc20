"""The node's processes: worker processes that claim jobs (``worker``) and run them through the pipeline in a
sandbox (``sandbox``, ``runner``), the scheduler's periodic work (``scheduler``), retention (``retention``) and the
log set-up every process shares (``logsetup``)."""
