using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Llama.Compiled.Grammars;

/// <summary>
/// Translates a JSON-schema <c>pattern</c> (ECMA-262 syntax) into GBNF for the content of a JSON string: literals,
/// <c>.</c>, classes with ranges and negation, <c>\d \w \s \D \W \S</c>, escapes (<c>\n \t \uXXXX \xXX</c>, escaped
/// punctuation), groups (capturing, <c>(?:)</c>, named), <c>|</c>, <c>* + ? {m} {m,} {m,n}</c> (lazy forms match
/// the same strings), <c>^</c> at the start and <c>$</c> at the end (without them the pattern may be surrounded by any
/// text, as JSON Schema searches). Lookarounds, backreferences, word boundaries, Unicode property classes and anchors
/// elsewhere are not supported: a <see cref="GrammarFormatException"/> names them.
/// </summary>
internal sealed class RegexConverter
{
    private static readonly CodePointSet Digit = CodePointSet.FromRanges([('0', '9')]);
    private static readonly CodePointSet Word = CodePointSet.FromRanges([('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')]);
    private static readonly CodePointSet Space = CodePointSet.FromRanges([('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]);
    private static readonly CodePointSet Dot = CodePointSet.Of('\n', '\r', 0x2028, 0x2029).Complement();

    private readonly string _pattern;
    private readonly string _pointer;
    private readonly JsonSchemaConverter _owner;
    private int _pos;

    public RegexConverter(string pattern, string pointer, JsonSchemaConverter owner)
    {
        _pattern = pattern;
        _pointer = pointer;
        _owner = owner;
    }

    public string Convert()
    {
        bool anchoredStart = false, anchoredEnd = false;
        if (_pattern.StartsWith('^'))
        {
            anchoredStart = true;
            _pos = 1;
        }
        int end = _pattern.Length;
        if (end > _pos && _pattern[end - 1] == '$' && !IsEscaped(end - 1))
        {
            anchoredEnd = true;
            end--;
        }
        string body = Alternation(end);
        if (_pos != end)
            throw Error(_pattern[_pos] == ')' ? "an unmatched ')'" : $"unexpected '{_pattern[_pos]}'");
        string any = _owner.AnyStringChar() + "*";
        return $"{(anchoredStart ? "" : any + " ")}({body}){(anchoredEnd ? "" : " " + any)}";
    }

    private bool IsEscaped(int index)
    {
        int backslashes = 0;
        for (int i = index - 1; i >= 0 && _pattern[i] == '\\'; i--)
            backslashes++;
        return backslashes % 2 == 1;
    }

    private string Alternation(int end)
    {
        var alternatives = new List<string> { Concatenation(end) };
        while (_pos < end && _pattern[_pos] == '|')
        {
            _pos++;
            alternatives.Add(Concatenation(end));
        }
        return string.Join(" | ", alternatives);
    }

    private string Concatenation(int end)
    {
        var items = new List<string>();
        while (_pos < end && _pattern[_pos] is not '|' and not ')')
        {
            string atom = Atom(end);
            items.Add(Quantified(atom, end));
        }
        return items.Count == 0 ? "\"\"" : string.Join(" ", items);
    }

    private string Quantified(string atom, int end)
    {
        if (_pos >= end)
            return atom;
        string? suffix = null;
        char c = _pattern[_pos];
        if (c is '*' or '+' or '?')
        {
            _pos++;
            suffix = c.ToString();
        }
        else if (c == '{' && TryCount(end, out int min, out int max))
        {
            suffix = max < 0 ? $"{{{min},}}" : min == max ? $"{{{min}}}" : $"{{{min},{max}}}";
        }
        if (suffix is null)
            return atom;
        if (_pos < end && _pattern[_pos] == '?')
            _pos++; // lazy: the same strings
        if (_pos < end && _pattern[_pos] is '*' or '+' or '?' or '{' && (_pattern[_pos] != '{' || LooksLikeCount(end)))
            throw Error("a quantifier after a quantifier");
        return $"({atom}){suffix}";
    }

    private bool LooksLikeCount(int end)
    {
        int save = _pos;
        bool ok = TryCount(end, out _, out _);
        _pos = save;
        return ok;
    }

    private bool TryCount(int end, out int min, out int max)
    {
        min = max = 0;
        int p = _pos + 1, start = p;
        while (p < end && char.IsAsciiDigit(_pattern[p]))
            p++;
        if (p == start || !int.TryParse(_pattern.AsSpan(start, p - start), NumberStyles.None, CultureInfo.InvariantCulture, out min))
            return false;
        max = min;
        if (p < end && _pattern[p] == ',')
        {
            p++;
            int s2 = p;
            while (p < end && char.IsAsciiDigit(_pattern[p]))
                p++;
            if (p == s2)
                max = -1;
            else if (!int.TryParse(_pattern.AsSpan(s2, p - s2), NumberStyles.None, CultureInfo.InvariantCulture, out max))
                return false;
        }
        if (p >= end || _pattern[p] != '}')
            return false;
        if (max >= 0 && max < min)
            throw Error($"the count {{{min},{max}}} is out of order");
        _pos = p + 1;
        return true;
    }

    private string Atom(int end)
    {
        char c = _pattern[_pos];
        switch (c)
        {
            case '(':
            {
                _pos++;
                if (_pos < end && _pattern[_pos] == '?')
                {
                    if (_pos + 1 < end && _pattern[_pos + 1] == ':')
                    {
                        _pos += 2;
                    }
                    else if (_pos + 1 < end && (_pattern[_pos + 1] == '<' || _pattern[_pos + 1] == 'P') && _pos + 2 < end && _pattern[_pos + 2] is not '=' and not '!')
                    {
                        int close = _pattern.IndexOf('>', _pos);
                        if (close < 0 || close >= end)
                            throw Error("an unterminated group name");
                        _pos = close + 1;
                    }
                    else
                    {
                        throw Error("lookaround assertions ('(?=', '(?!', '(?<=', '(?<!') and inline flags are not supported");
                    }
                }
                string inner = Alternation(end);
                if (_pos >= end || _pattern[_pos] != ')')
                    throw Error("a '(' without its ')'");
                _pos++;
                return "(" + inner + ")";
            }
            case '[':
                return Chars(ClassSet(end));
            case '.':
                _pos++;
                return Chars(Dot);
            case '\\':
                return Chars(Escape(end, inClass: false));
            case '^':
                throw Error("'^' is supported only at the start of the pattern");
            case '$':
                throw Error("'$' is supported only at the end of the pattern");
            case '*' or '+' or '?':
                throw Error($"'{c}' with nothing to repeat");
            default:
                return Chars(CodePointSet.Of(NextCodePoint()));
        }
    }

    private int NextCodePoint()
    {
        char c = _pattern[_pos];
        if (char.IsHighSurrogate(c) && _pos + 1 < _pattern.Length && char.IsLowSurrogate(_pattern[_pos + 1]))
        {
            _pos += 2;
            return char.ConvertToUtf32(c, _pattern[_pos - 1]);
        }
        _pos++;
        return c;
    }

    private string Chars(CodePointSet set) => JsonSchemaConverter.StringChars(set, _pointer);

    private CodePointSet ClassSet(int end)
    {
        _pos++; // [
        bool negated = false;
        if (_pos < end && _pattern[_pos] == '^')
        {
            negated = true;
            _pos++;
        }
        CodePointSet set = CodePointSet.Empty;
        bool first = true;
        while (true)
        {
            if (_pos >= end)
                throw Error("a '[' without its ']'");
            char c = _pattern[_pos];
            if (c == ']' && !first)
                break;
            if (c == ']' && first)
            {
                // "[]" matches nothing, "[^]" anything (ECMAScript).
                break;
            }
            first = false;
            CodePointSet lo = c == '\\' ? Escape(end, inClass: true) : CodePointSet.Of(NextCodePoint());
            if (_pos + 1 < end && _pattern[_pos] == '-' && _pattern[_pos + 1] != ']')
            {
                _pos++;
                CodePointSet hi = _pattern[_pos] == '\\' ? Escape(end, inClass: true) : CodePointSet.Of(NextCodePoint());
                if (!IsSingle(lo, out int a) || !IsSingle(hi, out int b))
                    throw Error("a class range with a class escape at its end");
                if (b < a)
                    throw Error("a class range out of order");
                set = set.Union(CodePointSet.FromRanges([(a, b)]));
            }
            else
            {
                set = set.Union(lo);
            }
        }
        _pos++; // ]
        return negated ? set.Complement() : set;
    }

    private static bool IsSingle(CodePointSet set, out int codePoint)
    {
        codePoint = 0;
        if (set.Ranges.Length != 1 || set.Ranges[0].Lo != set.Ranges[0].Hi)
            return false;
        codePoint = set.Ranges[0].Lo;
        return true;
    }

    private CodePointSet Escape(int end, bool inClass)
    {
        _pos++; // backslash
        if (_pos >= end)
            throw Error("a '\\' at the end");
        char c = _pattern[_pos++];
        switch (c)
        {
            case 'd': return Digit;
            case 'D': return Digit.Complement();
            case 'w': return Word;
            case 'W': return Word.Complement();
            case 's': return Space;
            case 'S': return Space.Complement();
            case 'n': return CodePointSet.Of('\n');
            case 'r': return CodePointSet.Of('\r');
            case 't': return CodePointSet.Of('\t');
            case 'f': return CodePointSet.Of('\f');
            case 'v': return CodePointSet.Of('\v');
            case '0': return CodePointSet.Of(0);
            case 'b' when inClass: return CodePointSet.Of('\b');
            case 'b' or 'B': throw Error("word boundaries ('\\b', '\\B') are not supported");
            case 'x': return CodePointSet.Of(Hex(2, end));
            case 'u':
                if (_pos < end && _pattern[_pos] == '{')
                {
                    int close = _pattern.IndexOf('}', _pos);
                    if (close < 0 || !int.TryParse(_pattern.AsSpan(_pos + 1, close - _pos - 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp) || cp > CodePointSet.MaxCodePoint)
                        throw Error("a malformed '\\u{...}' escape");
                    _pos = close + 1;
                    return CodePointSet.Of(cp);
                }
                int unit = Hex(4, end);
                // A surrogate pair written as two \u escapes.
                if (unit is >= 0xD800 and <= 0xDBFF && _pos + 6 <= end && _pattern[_pos] == '\\' && _pattern[_pos + 1] == 'u')
                {
                    _pos += 2;
                    int low = Hex(4, end);
                    return CodePointSet.Of(char.ConvertToUtf32((char)unit, (char)low));
                }
                return CodePointSet.Of(unit);
            case 'p' or 'P': throw Error("Unicode property classes ('\\p{...}') are not supported");
            case 'k': throw Error("named backreferences are not supported");
            case 'c': throw Error("control escapes ('\\cX') are not supported");
            default:
                if (char.IsAsciiDigit(c))
                    throw Error("backreferences are not supported");
                if (char.IsAsciiLetterOrDigit(c))
                    throw Error($"the escape '\\{c}' is not supported");
                _pos--;
                return CodePointSet.Of(NextCodePoint());
        }
    }

    private int Hex(int digits, int end)
    {
        if (_pos + digits > end || !int.TryParse(_pattern.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            throw Error($"expected {digits} hex digits");
        _pos += digits;
        return value;
    }

    private GrammarFormatException Error(string message) =>
        new($"Unsupported or malformed pattern /{_pattern}/ at offset {Math.Min(_pos, _pattern.Length)}: {message}", _pointer);
}
