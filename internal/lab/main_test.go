package lab_test

import (
	"testing"

	"github.com/pingpath/pingpath/internal/lab/labtest"
)

func TestMain(m *testing.M) { labtest.Main(m) }
