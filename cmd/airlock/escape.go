package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The CLI prints text that comes from the state store: reasons and actors
// admins typed (rows written before the admin API refused control
// characters included), package names and policy messages taken from
// image content an upstream publisher controls. Printed raw, a newline
// forges a row of `airlock audit`, a tab shifts columns, and an escape
// sequence rewrites the terminal. safe and jsonSafe make such text
// visible instead.

// safe returns s as it may be printed in a table or a line of output:
// unchanged when it is plain printable text, otherwise Go-quoted
// ("line one\nline two"). A value that starts with a double quote is
// quoted too, so that a quoted cell always means an escaped one.
func safe(s string) string {
	if s == "" {
		return s
	}
	if strings.HasPrefix(s, `"`) || !utf8.ValidString(s) || strings.IndexFunc(s, unsafeRune) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// unsafeRune reports characters that control a terminal or the layout of
// the output rather than show up as themselves: C0 and C1 controls and
// DEL, and the invisible format characters (bidirectional overrides,
// line and paragraph separators, zero-width characters).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// jsonSafe escapes, inside JSON text, the characters encoding/json leaves
// raw that a terminal would act on (DEL, C1 controls, format characters).
// They can only occur inside JSON strings, where \uXXXX is the same
// string, so the document means exactly what it meant.
func jsonSafe(b []byte) []byte {
	if bytes.IndexFunc(b, func(r rune) bool { return r != '\n' && r != '\t' && r != '\r' && unsafeRune(r) }) < 0 {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b) + 64)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			out.WriteRune(r) // JSON whitespace between tokens
		case unsafeRune(r) && r <= 0xffff:
			fmt.Fprintf(&out, `\u%04x`, r)
		case unsafeRune(r):
			// Outside the BMP: a surrogate pair.
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
		default:
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.Bytes()
}
