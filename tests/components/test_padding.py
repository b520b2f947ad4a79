from synthtune.components.padding import right_pad


def test_rows_are_padded_on_the_right_with_a_mask_of_real_tokens():
    ids, mask = right_pad([[5, 6, 7], [], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 1, 1], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 0]]
    empty_ids, empty_mask = right_pad([[], []], pad_id=0)
    assert empty_ids.shape == (2, 0) and empty_mask.shape == (2, 0)
