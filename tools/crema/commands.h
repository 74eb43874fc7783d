/* commands.h -- the subcommands of the `crema` tool. Each lives in its own cmd_<name>.c and
 * is listed once in main.c's table. argv[0] is the command name; flags follow. Returns the
 * process exit status (0 ok, 1 error, 2 usage error). */
#ifndef CREMA_TOOLS_COMMANDS_H
#define CREMA_TOOLS_COMMANDS_H

int crema_cmd_info(int argc, char **argv);
int crema_cmd_upgrade(int argc, char **argv);
int crema_cmd_forward(int argc, char **argv);
int crema_cmd_time(int argc, char **argv);
int crema_cmd_train(int argc, char **argv);
int crema_cmd_test(int argc, char **argv);
int crema_cmd_finetune(int argc, char **argv);
int crema_cmd_classify(int argc, char **argv);
int crema_cmd_export(int argc, char **argv);
int crema_cmd_plot(int argc, char **argv);
int crema_cmd_lr_find(int argc, char **argv);
int crema_cmd_report(int argc, char **argv);

#endif
