/* python.h -- finding the Python interpreter the oracle tests drive (OpenCV, ONNX, numpy). */
#ifndef CREMA_TESTS_PYTHON_H
#define CREMA_TESTS_PYTHON_H

/* $CREMA_PYTHON, else Debian's /usr/bin/python3, else python3: the first that imports every
 * module of `modules` (a comma-separated Python import list, e.g. "numpy, cv2"). Returns a
 * static string, or NULL when none does. */
const char *test_find_python(const char *modules);

#endif
