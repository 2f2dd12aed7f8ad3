// kiln: the user CLI. Parses flags and runs one subcommand (see commands.h).
#include <CLI/CLI.hpp>

#include "scheduler/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: submit and watch training jobs"};
  kiln::cli::Commands commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return commands.RunSelected();
}
