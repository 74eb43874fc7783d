/* report_sections.h -- parts of the HTML report shared between report.c and
 * report_sections.c; internal to the report module. Every section appends HTML to `b`,
 * counts itself in sum->sections and records what it had to leave out with
 * crema_report_note. */
#ifndef CREMA_REPORT_REPORT_SECTIONS_H
#define CREMA_REPORT_REPORT_SECTIONS_H

#include "report/canvas.h"
#include "report/report.h"
#include "report/strbuf.h"

/* Appends "; "-separated notes to sum->notes (truncated when full). */
void crema_report_note(crema_report_summary *sum, const char *fmt, ...) CREMA_PRINTF(2, 3);
/* Closes an SVG canvas and appends its document. */
void crema_report_svg(crema_strbuf *b, crema_canvas *c);
/* The diagnostics CSV (crema train --diagnostics) as two charts; nothing when path is "". */
void crema_report_section_diagnostics(crema_strbuf *b, const char *path, crema_report_summary *sum);
/* The net's layers with output shapes, parameters, multiply-adds and activation memory. */
void crema_report_section_net(crema_strbuf *b, const char *path, crema_report_summary *sum);

#endif
