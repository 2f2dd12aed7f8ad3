// Config files for the daemons (/etc/kiln/scheduler.toml, /etc/kiln/worker.toml), read with
// toml++ and handed to CLI11 as if each key were its flag: `listen = "tcp://0.0.0.0:7070"` is
// `--listen tcp://0.0.0.0:7070`. Keys are the long flag names without "--" ("_" may stand for
// "-"); a table is a repeatable KEY=VALUE flag (`[user-weight]` `alice = 2` is
// `--user-weight alice=2`); an array repeats the flag. A flag given on the command line wins over
// the file (CLI11 applies a file's value only to a flag not given). A key that is no flag, a
// flag that takes no file value (--config, --help), a bad value type or a TOML syntax error is
// an error naming the file, the line and the key.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace kiln {

class TomlConfig : public CLI::Config {
 public:
  // `app`: the application whose flags the keys must name (it must outlive this).
  explicit TomlConfig(const CLI::App* app) : app_(app) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
  std::string to_config(const CLI::App*, bool, bool, std::string) const override;

 private:
  const CLI::App* app_;
};

// Adds --config FILE to `app`, read with TomlConfig (the systemd units pass
// /etc/kiln/scheduler.toml and /etc/kiln/worker.toml; without --config no file is read).
CLI::Option* AddConfigFile(CLI::App& app);

// The settings in effect after parsing, one "name = value" line each (the flag or file's value,
// else the default; a repeated flag's values as an array), for `check`.
std::string EffectiveSettings(const CLI::App& app);

}  // namespace kiln
