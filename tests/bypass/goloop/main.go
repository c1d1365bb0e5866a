// Stat, open, read and close every file under a directory, R rounds; prints ns per file.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	dir := os.Args[1]
	rounds, _ := strconv.Atoi(os.Args[2])
	names, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	start := time.Now()
	total := 0
	for r := 0; r < rounds; r++ {
		for _, e := range names {
			p := filepath.Join(dir, e.Name())
			if _, err := os.Stat(p); err != nil {
				panic(err)
			}
			f, err := os.Open(p)
			if err != nil {
				panic(err)
			}
			b, err := io.ReadAll(f)
			if err != nil {
				panic(err)
			}
			total += len(b)
			f.Close()
		}
	}
	el := time.Since(start)
	fmt.Printf("goloop %d files x %d rounds: %d ns/file (%d bytes)\n", len(names), rounds, el.Nanoseconds()/int64(len(names)*rounds), total)
}
