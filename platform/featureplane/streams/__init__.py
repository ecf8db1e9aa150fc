"""Stream feature views at run time: the processing core (``processor``), per-event tiles (``tiles``),
where their state is kept (``store``, one module per backend) and the sources that feed them."""
