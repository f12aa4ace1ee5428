package contracts

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Lint rule ids: basics that protect a contract's readers, reported as
// warnings.
const (
	// lintPackageVersion: a package whose last component is not a version
	// (v1, v2beta1) cannot take a breaking change next to the old one.
	lintPackageVersion = "PACKAGE_VERSION_SUFFIX"
	// lintEnumZero: the zero value of an enum is what a reader sees for a
	// field that was never set, or set by a writer that did not know the
	// value; it must not mean anything.
	lintEnumZero = "ENUM_ZERO_VALUE_SUFFIX"
)

// versionSuffix is the last component of a versioned package.
var versionSuffix = regexp.MustCompile(`^v\d+((alpha|beta)\d*)?$`)

// Lint returns warnings for the contract's own files among files (those
// provided by strata, protobuf and protovalidate are skipped):
//
//   - PACKAGE_VERSION_SUFFIX: every file declares a package whose last
//     component is a version, such as fleet.v1;
//   - ENUM_ZERO_VALUE_SUFFIX: the zero value of every enum is named
//     <ENUM_NAME>_UNSPECIFIED, so that "not set" is never a real value.
//
// Findings are sorted.
func Lint(files []protoreflect.FileDescriptor) []Finding {
	var out []Finding
	for _, fd := range files {
		if providedFile(fd.Path()) {
			continue
		}
		pkg := string(fd.Package())
		last := pkg[strings.LastIndexByte(pkg, '.')+1:]
		if !versionSuffix.MatchString(last) {
			f := finding(lintPackageVersion, SeverityWarning, fileLocation(fd, filePackageField), false)
			if pkg == "" {
				f.Message = "the file declares no package"
				f.Hint = "declare a versioned package, e.g. `package acme.fleet.v1;`"
			} else {
				f.Message = fmt.Sprintf("package %s does not end in a version such as v1", pkg)
				f.Hint = fmt.Sprintf("rename the package to %s.v1: a breaking change then goes to %s.v2 beside it", pkg, pkg)
			}
			out = append(out, f)
		}
		eachEnum(fd, func(ed protoreflect.EnumDescriptor) {
			values := ed.Values()
			zero := values.ByNumber(0)
			want := enumPrefix(ed) + "UNSPECIFIED"
			if zero == nil || string(zero.Name()) == want {
				return // proto2 enums may have no zero value
			}
			f := finding(lintEnumZero, SeverityWarning, position(zero, nil), false)
			f.Message = fmt.Sprintf("the zero value of enum %s is %s; a reader sees it for a field nobody set", ed.FullName(), zero.Name())
			f.Hint = fmt.Sprintf("name the zero value %s = 0 and give %s a number of its own", want, zero.Name())
			out = append(out, f)
		})
	}
	SortFindings(out)
	return out
}

// enumPrefix returns the conventional prefix of ed's values: its name in
// UPPER_SNAKE_CASE and "_", e.g. "MACHINE_STATE_" for MachineState.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	name := string(ed.Name())
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			prev := name[i-1]
			if prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9' {
				b.WriteByte('_')
			}
		}
		b.WriteString(strings.ToUpper(string(r)))
	}
	b.WriteByte('_')
	return b.String()
}

// eachEnum calls fn for every enum declared in fd, nested ones included.
func eachEnum(fd protoreflect.FileDescriptor, fn func(protoreflect.EnumDescriptor)) {
	enums := fd.Enums()
	for i := range enums.Len() {
		fn(enums.Get(i))
	}
	eachMessage(fd, func(md protoreflect.MessageDescriptor) {
		enums := md.Enums()
		for i := range enums.Len() {
			fn(enums.Get(i))
		}
	})
}

// eachMessage calls fn for every message declared in fd, nested ones
// included and map entries excluded, parents first.
func eachMessage(fd protoreflect.FileDescriptor, fn func(protoreflect.MessageDescriptor)) {
	var walk func(protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := range msgs.Len() {
			md := msgs.Get(i)
			if md.IsMapEntry() {
				continue
			}
			fn(md)
			walk(md.Messages())
		}
	}
	walk(fd.Messages())
}

// providedFile reports whether path is a file that strata, protobuf or
// protovalidate provide, rather than one of the contract's own.
func providedFile(path string) bool {
	return strings.HasPrefix(path, "google/protobuf/") || path == validateFile || path == OptionsFile
}

// fileLocation returns the position of element field of file fd, or the
// file alone.
func fileLocation(fd protoreflect.FileDescriptor, field int32) Diagnostic {
	d := Diagnostic{File: fd.Path()}
	if loc := fd.SourceLocations().ByPath(protoreflect.SourcePath{field}); len(loc.Path) > 0 {
		d.Line, d.Col = loc.StartLine+1, loc.StartColumn+1
	}
	return d
}

// finding starts a Finding at position at.
func finding(rule string, sev Severity, at Diagnostic, old bool) Finding {
	return Finding{Rule: rule, Severity: sev, File: at.File, Line: at.Line, Col: at.Col, Old: old}
}
