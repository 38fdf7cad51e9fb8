package analyze

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

func TestDevDump(t *testing.T) {
	dir := os.Getenv("PP_DUMP")
	if dir == "" {
		t.Skip()
	}
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(r, "", " ")
	fmt.Println(string(b))
	for v := 0; v < NumVals; v++ {
		fmt.Printf("%-26s %+v\n", ValueNames[v], r.Stats[v])
	}
}
