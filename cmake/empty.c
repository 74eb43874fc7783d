/* empty.c -- lets a module library exist before its first source file does. */
typedef int crema_empty_translation_unit;
