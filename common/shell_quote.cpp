#include "common/shell_quote.h"

namespace kiln {

namespace {
bool IsPlain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == '=' || c == '@' ||
         c == '%' || c == '+' || c == ',';
}
}  // namespace

std::string ShellQuote(const std::string& word) {
  bool plain = !word.empty() && word[0] != '=' && word[0] != '%';
  for (char c : word) plain = plain && IsPlain(c);
  if (plain) return word;
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string ShellCommand(const std::vector<std::string>& words) {
  std::string command;
  for (const auto& w : words) {
    if (!command.empty()) command += ' ';
    command += ShellQuote(w);
  }
  return command;
}

}  // namespace kiln
