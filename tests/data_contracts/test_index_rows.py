import numpy as np
import pyarrow as pa

from data_contracts import check_index_rows


def test_index_rows_contract_rejects_nan_zero_and_empty_rows() -> None:
    v = np.zeros((4, 8), dtype=np.float32)
    v[0, 0] = 1.0  # good
    v[1, :] = np.nan  # NaN
    v[2, 3] = 1.0  # good vector, but empty text
    # row 3: zero vector
    batch = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["ok", "nan", "", "zero"],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 8),
        }
    )
    good, bad = check_index_rows(batch)
    assert good.column("id").to_pylist() == ["a"]
    reasons = dict(zip(bad.column("id").to_pylist(), bad.column("reason").to_pylist(), strict=True))
    assert "NaN" in reasons["b"]
    assert "empty text" in reasons["c"]
    assert "unit length" in reasons["d"]
