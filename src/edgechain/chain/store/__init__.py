"""The block store: one SQLite file per node (``block_store.BlockStore``), the only I/O
inside ``chain/``; nothing else in ``chain/`` imports this package.

One module per job: ``block_store.py`` (the store and ``load_fork_choice``),
``connection.py`` (transactions, disk-full errors), ``schema.py`` (on-disk format,
migrations), ``blocks.py``, ``app_history.py`` and ``canonical.py`` (the tables).
"""
