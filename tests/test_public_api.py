import optimem


def test_public_names_are_pinned():
    # Growing the public API is a decision: update this list on purpose.
    assert optimem.__all__ == [
        "BackendError",
        "BackendUnavailable",
        "BudgetPolicy",
        "CompressResult",
        "Context",
        "Deleted",
        "DuplicateExternalId",
        "Hits",
        "InputError",
        "Mode",
        "OpticalMemory",
        "OptimemError",
        "Page",
        "PageNotFound",
        "Pricing",
        "Recall",
        "RecallHit",
        "RenderError",
        "RepresentationMismatch",
        "SchemaError",
        "Session",
        "SessionNotFound",
        "Stats",
        "StoreError",
        "Turn",
        "TurnAgePolicy",
        "UnknownBackend",
        "WallClockPolicy",
        "__version__",
    ]
    for name in optimem.__all__:
        assert hasattr(optimem, name)


def test_import_does_not_pull_heavy_engines():
    import subprocess
    import sys

    code = (
        "import sys, optimem; heavy = [m for m in ('torch', 'onnxruntime', 'transformers', 'fastapi',"
        " 'langchain_core', 'tesserocr') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
