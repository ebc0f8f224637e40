"""Exponential moving average of the weights (``callbacks=[default,ema]``), on the training device.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` does the work:
validation runs on the averaged weights (swapped in and out around each validation),
every checkpoint's ``state_dict`` holds the averaged weights (the raw ones go to
``current_model_state`` for resuming), and the averaged weights replace the raw ones
when training ends. So ``val/miou``, ``best.ckpt``, evaluation, export and the test
split all see the average. None of the CamVid anchors use it; PaddleSeg offers it
(``--use_ema``, decay 0.999 after a warm-up).
"""

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMAWeights(EMAWeightAveraging):
    """:class:`EMAWeightAveraging` whose average lives on the device that trains.

    Lightning's default places the average where the module is when callbacks are
    set up, which is still the CPU: on a GPU every update would then copy the weights
    to the host. Here ``device=None`` means the trainer's root device.

    Args:
        decay: Weight of the previous average per update (0.999: about the last 1000 steps).
        update_every_n_steps: Optimizer steps between updates.
        update_starting_at_step: First step that updates (None: the first).
        use_buffers: Average BatchNorm statistics too (else they are copied).
        device: Where the average lives (None: the training device).
    """

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
        device: str | None = None,
    ) -> None:
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)
