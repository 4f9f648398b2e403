"""Synthetic chest radiographs, reports, scene graphs and difference questions in the real layouts.

``python -m locvqa_jax.data.synthetic --out DIR --patients N --seed S`` writes MIMIC-CXR-JPG,
MIMIC-CXR reports, Chest ImaGenome and Medical-Diff-VQA files under DIR, exactly in the schemas of
the PhysioNet releases, so the dataset builders read synthetic and real data through one code path.

Modules: ``truth`` (shared records), ``presets`` (all knobs), ``timeline`` (findings over time),
``render`` (pixels), ``reports``, ``scene_graph``, ``vqa`` (text and labels), ``layout`` (ids,
paths, dates), ``writers`` (files and tables).
"""
