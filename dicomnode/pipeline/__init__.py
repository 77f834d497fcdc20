"""The image pipeline, from a stored instance to its result files: which images are measured (``selection``), the
checks before decoding (``image_checks``), the model and the output builders (``analysis``), one instance's work
as the sandbox runs it (``task``), durable output files (``output_files``) and what a failure means
(``failures``). It knows nothing of the network, the queue or the processes that run it."""
