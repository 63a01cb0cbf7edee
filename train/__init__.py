"""privsdk.train: data sets, filter networks, the five papers' training methods and the training run.

Modules (imported on demand; this package itself imports nothing heavy):
``data`` (load_dataset, make_splits), ``networks`` (build_filter), ``checkpoint``
(load_filter), ``methods`` (aioi, labelflip, maxent, filtergen, advrec),
``config``, ``trainer``, ``cli`` (``privsdk train``). See train/README.md.
"""
