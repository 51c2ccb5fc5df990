"""``edgechain experiment paper``: the paper's §4 evaluation (Figs. 7-12, Table 3)
reproduced with this system, in simulation.

* ``run.py``: the run: the simulation, the worst case, the migration table, the
  run directory (``result.json``, the figures, ``report.md``);
* ``sim_data.py``: what Figs. 7, 8, 9, 11 and 12 are drawn from, read out of the
  simulation's canonical chain and its report deliveries;
* ``worst_case.py`` (with ``lab/planner_model.py``): every app on one node, the
  paper's Algorithm 1 against our planner (§4.2);
* ``migration_table.py``: Table 3 / Fig. 10 from ``benchmarks/migration.py --json``;
* ``paper_numbers.py``: the paper's own figures, with the section they come from;
* ``figures.py``, ``figures_apps.py``: the PNGs (matplotlib, imported only there and
  only when drawing);
* ``report.py``: ``report.md``, each number beside the paper's.
"""
