"""What a cold query pays for one engine, timed in a fresh process (`model.tuning` runs it once per engine when it
measures a machine): importing the engine, opening the bundle's graph and answering one image. Measured in the
process that measures everything else, an engine imported there already would look cheaper than it is.

`python -m edge_search.runtime.model.cold_start BUNDLE DEVICE PRECISION bf16|- THREADS` prints the seconds."""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    from edge_search.runtime.model import selfcheck
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.session import open_candidate
    from edge_search.runtime.model.tuning import Candidate

    root, device, precision, bf16, threads = argv
    bundle = Bundle.load(root)
    session = open_candidate(bundle, Candidate(device, precision, bf16 == "bf16"), int(threads), one_shot=True)
    session.run(selfcheck.reference_pixels(*bundle.manifest.preprocess.input_hw(), count=1))
    print(f"{time.perf_counter() - started:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
