"""Config sweeps: grid axes and points (grid.py), ready ablation presets (presets.py), and the
tables and plot collected from finished runs (report.py). tools/sweep.py runs them."""
