"""`tinyml search`: architecture search under a board's SRAM and flash (docs/search.md).

space (spaces as TOML data) -> lower (subnet -> IR, priced by tinyml.cost) -> costs
(batched on Ray) -> supernet (OFA weight sharing, progressive shrinking) -> evolve
(accuracy predictor + evolution under the budgets) -> deliver (extract, recalibrate,
fine-tune, int8 PTQ, QEMU validation) -> report. PyTorch and Ray are imported only
by the modules that train or scale out.
"""
