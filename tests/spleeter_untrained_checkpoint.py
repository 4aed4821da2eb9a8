"""Write an untrained Spleeter 2stems checkpoint as a release tarball (checkpoint, model.data-00000-of-00001,
model.index, model.meta at its root, like https://github.com/deezer/spleeter/releases/download/v1.4.0/
2stems.tar.gz): Spleeter's own graph with random weights, saved by TensorFlow.

Spleeter's layers draw their initial weights with a fixed seed (he_uniform, seed 50), so every freshly
initialised graph holds the same values, the very ones Spleeter runs with when it finds no checkpoint. Each
variable's initial values are therefore shuffled with `seed`: same distribution, other weights per seed.

Run with the Spleeter environment's Python: `python spleeter_untrained_checkpoint.py OUT.tar.gz SEED`.
The real weights cannot be had where the tests run; this exercises the same loading path with other values.
"""

import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from spleeter.model import EstimatorSpecBuilder, InputProviderFactory
from spleeter.utils.configuration import load_configuration


def write_untrained_checkpoint(archive: Path, seed: int) -> None:
    params = load_configuration("spleeter:2stems") | {"MWF": False}
    with tf.Graph().as_default(), tempfile.TemporaryDirectory() as folder:
        builder = EstimatorSpecBuilder(InputProviderFactory.get(params).get_input_dict_placeholders(), params)
        builder.outputs  # noqa: B018 (building the outputs creates the model's variables)
        tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            rng = np.random.default_rng(seed)
            for variable in tf.compat.v1.trainable_variables():
                initial = session.run(variable)
                variable.load(rng.permutation(initial.ravel()).reshape(initial.shape), session)
            tf.compat.v1.train.Saver(save_relative_paths=True).save(session, str(Path(folder) / "model"),
                                                                     write_meta_graph=True)
        with tarfile.open(archive, "w:gz") as out:
            for name in ("checkpoint", "model.data-00000-of-00001", "model.index", "model.meta"):
                out.add(Path(folder) / name, arcname=name)


if __name__ == "__main__":
    write_untrained_checkpoint(Path(sys.argv[1]), int(sys.argv[2]))
