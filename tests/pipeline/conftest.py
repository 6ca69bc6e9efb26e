import pytest


@pytest.fixture(scope="session")
def tiny_bundle():
    from backend.models.tiny import build_bundle

    return build_bundle(seed=0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_bundle):
    from backend.pipeline.layerfusion import LayerFusionPipeline

    return LayerFusionPipeline.from_bundle(tiny_bundle)


@pytest.fixture(scope="session")
def engine():
    from backend.models.options import LoadOptions
    from backend.pipeline.engine import Engine

    e = Engine(LoadOptions(model="tiny", device="cpu"))
    e.load()
    return e
