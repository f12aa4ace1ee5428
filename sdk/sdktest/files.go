package sdktest

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// protoFiles lists the .proto files under dir, as import paths.
func protoFiles(dir string) ([]string, error) {
	var files []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".proto") {
			files = append(files, p)
		}
		return nil
	})
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no .proto files")
	}
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", dir, err)
	}
	return files, nil
}
