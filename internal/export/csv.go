package export

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pingpath/pingpath/internal/analyze"
)

// CSVHeader is the first row of the per-ping CSV: the ping's identity,
// then every value of the analysis in µs (segments, totals, residuals),
// then the values the plausibility gates refused, with what they were.
func CSVHeader() []string {
	h := []string{"icmp_id", "icmp_seq", "time_unix_ns", "complete", "lost"}
	for v := 0; v < analyze.NumVals; v++ {
		h = append(h, analyze.ValueNames[v]+"_us")
	}
	return append(h, "refused")
}

// WriteCSV writes one row per ping. A value not measured, or refused (it is
// then listed in the refused column as NAME=µs), is an empty cell.
func WriteCSV(w io.Writer, res *analyze.Result) error {
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(CSVHeader()); err != nil {
		return fmt.Errorf("writing the CSV: %w", err)
	}
	row := make([]string, 0, len(CSVHeader()))
	for i := range res.Pings {
		p := &res.Pings[i]
		row = append(row[:0], strconv.Itoa(int(p.ID)), strconv.Itoa(int(p.Seq)), "",
			strconv.FormatBool(p.Complete), strconv.FormatBool(p.Lost))
		if p.Time != 0 {
			row[2] = strconv.FormatInt(p.Time, 10)
		}
		var refused []string
		for v := 0; v < analyze.NumVals; v++ {
			cell := ""
			if p.Has&(1<<v) != 0 {
				x := strconv.FormatFloat(float64(p.Val[v])/1000, 'f', 3, 64)
				if p.Excl&(1<<v) != 0 {
					refused = append(refused, analyze.ValueNames[v]+"="+x)
				} else {
					cell = x
				}
			}
			row = append(row, cell)
		}
		row = append(row, strings.Join(refused, ";"))
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("writing the CSV: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing the CSV: %w", err)
	}
	return bw.Flush()
}
