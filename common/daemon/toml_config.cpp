#include "common/daemon/toml_config.h"

#include <toml++/toml.h>

#include <iomanip>
#include <sstream>

namespace kiln {

namespace {

std::string Where(const std::string& file, const toml::node& node, const std::string& key) {
  return file + " line " + std::to_string(node.source().begin.line) + ": \"" + key + "\"";
}

// A scalar as the text its flag would take on the command line, or "" (and `ok` false).
std::string ScalarText(const toml::node& node, bool* ok) {
  *ok = true;
  if (auto s = node.value_exact<std::string>()) return *s;
  if (auto i = node.value_exact<int64_t>()) return std::to_string(*i);
  if (auto d = node.value_exact<double>()) {
    std::ostringstream out;
    out << std::setprecision(17) << *d;
    return out.str();
  }
  if (auto b = node.value_exact<bool>()) return *b ? "true" : "false";
  *ok = false;
  return "";
}

}  // namespace

std::vector<CLI::ConfigItem> TomlConfig::from_config(std::istream& input) const {
  std::stringstream text;
  text << input.rdbuf();
  const CLI::Option* config = app_->get_config_ptr();
  const std::string file =
      config != nullptr && config->count() > 0 ? config->as<std::string>() : "config file";
  toml::table table;
  try {
    table = toml::parse(text.str());
  } catch (const toml::parse_error& e) {
    throw CLI::ConfigError(file + " line " + std::to_string(e.source().begin.line) + ", column " +
                           std::to_string(e.source().begin.column) + ": " +
                           std::string(e.description()));
  }
  std::vector<CLI::ConfigItem> items;
  for (auto&& [raw_key, node] : table) {
    std::string key(raw_key.str());
    std::string flag = key;
    for (auto& c : flag) c = c == '_' ? '-' : c;
    const CLI::Option* option = app_->get_option_no_throw("--" + flag);
    const std::string where = Where(file, node, key);
    const bool unknown =
        option == nullptr || !option->get_configurable() || flag == "config" || flag == "help";
    if (unknown && app_->get_allow_config_extras() == CLI::config_extras_mode::ignore) continue;
    if (unknown) {
      std::string known;
      for (const CLI::Option* o : app_->get_options()) {
        if (o->get_lnames().empty() || !o->get_configurable()) continue;
        const std::string name = o->get_lnames().front();
        if (name == "config" || name == "help") continue;
        known += (known.empty() ? "" : ", ") + name;
      }
      throw CLI::ConfigError(where + " is not a setting here; the settings are: " + known);
    }
    CLI::ConfigItem item;
    item.name = flag;
    bool ok = true;
    if (const toml::table* sub = node.as_table(); sub != nullptr && sub->empty()) {
      continue;  // a table left empty (its entries commented out) sets nothing
    } else if (sub != nullptr) {
      for (auto&& [name, value] : *sub) {
        std::string text_value = ScalarText(value, &ok);
        if (!ok) break;
        item.inputs.push_back(std::string(name.str()) + "=" + text_value);
      }
    } else if (const toml::array* array = node.as_array()) {
      for (const toml::node& value : *array) {
        item.inputs.push_back(ScalarText(value, &ok));
        if (!ok) break;
      }
    } else {
      item.inputs.push_back(ScalarText(node, &ok));
    }
    if (!ok) {
      throw CLI::ConfigError(where +
                             ": expected a string, number or boolean (or an array or table of "
                             "them)");
    }
    if (option->get_type_size_max() == 0 && item.inputs.size() == 1 &&
        node.value_exact<bool>() == std::nullopt) {
      throw CLI::ConfigError(where + " is a switch: give it true or false");
    }
    items.push_back(std::move(item));
  }
  return items;
}

std::string TomlConfig::to_config(const CLI::App*, bool, bool, std::string) const { return ""; }

CLI::Option* AddConfigFile(CLI::App& app) {
  app.config_formatter(std::make_shared<TomlConfig>(&app));
  app.allow_config_extras(CLI::config_extras_mode::error);
  return app.set_config("--config", "",
                        "settings file (TOML; each key is a flag without --, e.g. listen = "
                        "\"tcp://0.0.0.0:7070\"; flags given here win over it)",
                        false);
}

std::string EffectiveSettings(const CLI::App& app) {
  std::string out;
  auto quote = [](const std::string& v) {
    std::string q = "\"";
    for (char c : v) q += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    return q + "\"";
  };
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_lnames().empty()) continue;
    const std::string name = o->get_lnames().front();
    if (name == "config" || name == "help") continue;
    std::vector<std::string> values = o->count() > 0 ? o->results() : std::vector<std::string>{};
    if (values.empty() && !o->get_default_str().empty()) values = {o->get_default_str()};
    if (o->get_expected_max() > 1) {
      std::string list;
      for (const auto& v : values) list += (list.empty() ? "" : ", ") + quote(v);
      out += name + " = [" + list + "]\n";
    } else if (o->get_type_name().empty()) {  // a switch
      out += name + " = " + (o->count() > 0 && o->as<bool>() ? "true" : "false") + "\n";
    } else {
      out += name + " = " + (values.empty() ? "\"\"" : quote(values.back())) + "\n";
    }
  }
  return out;
}

}  // namespace kiln
