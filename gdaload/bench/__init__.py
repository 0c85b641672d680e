"""The evaluation harness behind ``gdaload quickstart`` and ``gdaload evaluate``.

One concept per module, dependencies pointing down the list:

* :mod:`~gdaload.bench.stats`: means with Student-t intervals, paired gains;
* :mod:`~gdaload.bench.assets`: the shipped generators;
* :mod:`~gdaload.bench.classifier`: the small CNNs, their training loop and tests;
* :mod:`~gdaload.bench.memo`: :class:`MemoGenerator`, generated samples shared by arms;
* :mod:`~gdaload.bench.adapters`: loader adapters (fixed epoch, batch augmentation);
* :mod:`~gdaload.bench.tasks`: :class:`Task` and the built-in classification tasks;
* :mod:`~gdaload.bench.arms`: the arms of one seed and their accumulated metrics;
* :mod:`~gdaload.bench.report`: markdown tables, strict JSON and pictures;
* :mod:`~gdaload.bench.novel_views`: single views, their generated views, averaging;
* :mod:`~gdaload.bench.views`: the multi-view averaging benchmark and its task;
* :mod:`~gdaload.bench.evaluate`: the class-task benchmark and ``gdaload evaluate``;
* :mod:`~gdaload.bench.quickstart`: ``gdaload quickstart``.

The package imports none of them itself: importing one module loads only what it needs.
The command line calls :func:`gdaload.bench.quickstart.run_quickstart` and
:func:`gdaload.bench.evaluate.evaluate`.
"""
