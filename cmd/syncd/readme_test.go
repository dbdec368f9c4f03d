package main

import (
	"os"
	"strings"
	"testing"
)

// The README's two quick-start commands are the project's contract: the
// demo command must exist and CI must run the very test command shown.
func TestReadmeCommandsMatchCI(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```sh\n")
	if len(blocks) < 3 {
		t.Fatal("README has fewer than two sh blocks")
	}
	first := strings.TrimSpace(strings.SplitN(blocks[1], "```", 2)[0])
	second := strings.TrimSpace(strings.SplitN(blocks[2], "```", 2)[0])
	if first != "go run ./cmd/syncd demo" {
		t.Fatalf("README's first command is %q", first)
	}
	if !strings.Contains(string(ci), "\n"+second+"\n") {
		t.Fatalf(".ci/run does not run the README's test command %q", second)
	}
}
