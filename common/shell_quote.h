// Quoting for commands kiln prints for a person to paste into a shell (hints, errors, the
// quickstart). Z85 keys contain characters such as & < > $ ( ) that bash would interpret.
#pragma once

#include <string>
#include <vector>

namespace kiln {

// `word` as one POSIX shell word: unchanged when it holds only characters no shell treats
// specially (letters, digits, _ - . / : = @ % + ,), else in single quotes with each ' written
// as '\''. The empty string is ''.
std::string ShellQuote(const std::string& word);
// The words quoted one by one and joined with spaces.
std::string ShellCommand(const std::vector<std::string>& words);

}  // namespace kiln
