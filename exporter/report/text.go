package report

import "io"

func writeText(w io.Writer, s *Summary) error     { return nil }
func writeMarkdown(w io.Writer, s *Summary) error { return nil }
func writeHTML(w io.Writer, s *Summary) error     { return nil }
