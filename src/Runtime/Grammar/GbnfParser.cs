using System;
using System.Collections.Generic;
using System.Globalization;

namespace Llama.Compiled.Grammars;

/// <summary>A node of a parsed GBNF rule body (code points, not yet bytes).</summary>
internal abstract class GbnfNode
{
    public int Offset { get; init; }
}

/// <summary>Alternatives: any one of the sequences.</summary>
internal sealed class GbnfAlternatives(List<GbnfNode> items) : GbnfNode
{
    public List<GbnfNode> Items { get; } = items;
}

/// <summary>A sequence: each item in turn (empty: the empty string).</summary>
internal sealed class GbnfSequence(List<GbnfNode> items) : GbnfNode
{
    public List<GbnfNode> Items { get; } = items;
}

/// <summary>One code point of a set of inclusive ranges (sorted, disjoint, no surrogates).</summary>
internal sealed class GbnfCharClass(CodePointSet set) : GbnfNode
{
    public CodePointSet Set { get; } = set;
}

/// <summary>A reference to a rule by name.</summary>
internal sealed class GbnfRuleRef(string name) : GbnfNode
{
    public string Name { get; } = name;
}

/// <summary><c>item{Min,Max}</c>; Max -1 = unbounded.</summary>
internal sealed class GbnfRepeat(GbnfNode item, int min, int max) : GbnfNode
{
    public GbnfNode Item { get; } = item;
    public int Min { get; } = min;
    public int Max { get; } = max;
}

/// <summary>A rule as written: its name, body and where it starts.</summary>
internal sealed record GbnfRule(string Name, GbnfNode Body, int Offset);

/// <summary>
/// Reads GBNF as llama.cpp writes it (grammars/README.md, llama-grammar.cpp): <c>name ::= alternatives</c>, one rule per line
/// (newlines are allowed inside parentheses and after <c>|</c>), <c>"literals"</c>, <c>[classes]</c> with ranges and
/// <c>^</c>, <c>.</c>, groups, <c>* + ? {m} {m,} {m,n}</c>, escapes <c>\x \u \U \t \r \n \\ \" \[ \] \-</c>, <c>#</c> comments.
/// Rule names are letters, digits, <c>-</c> and <c>_</c>. Token references (<c>&lt;[id]&gt;</c>) are not supported.
/// </summary>
internal sealed class GbnfParser
{
    // llama.cpp's limit: more repetitions than this is an error for the minimum and "unbounded" for the maximum.
    public const int MaxRepetitions = 2000;

    private readonly string _text;
    private int _pos;

    private GbnfParser(string text) => _text = text;

    public static List<GbnfRule> Parse(string text)
    {
        var parser = new GbnfParser(text);
        var rules = new List<GbnfRule>();
        parser.SkipSpace(newlineOk: true);
        while (!parser.AtEnd)
            rules.Add(parser.ParseRule());
        return rules;
    }

    private bool AtEnd => _pos >= _text.Length;
    private char Current => _pos < _text.Length ? _text[_pos] : '\0';
    private char Peek(int ahead) => _pos + ahead < _text.Length ? _text[_pos + ahead] : '\0';

    private GbnfRule ParseRule()
    {
        int start = _pos;
        string name = ParseName();
        SkipSpace(newlineOk: false);
        if (!(Current == ':' && Peek(1) == ':' && Peek(2) == '='))
            throw Error($"expected '::=' after the rule name '{name}'");
        _pos += 3;
        SkipSpace(newlineOk: true);
        GbnfNode body = ParseAlternatives(nested: false);
        if (Current == '\r')
            _pos += Peek(1) == '\n' ? 2 : 1;
        else if (Current == '\n')
            _pos++;
        else if (!AtEnd)
            throw Error($"unexpected '{Describe(Current)}' in rule '{name}' (expected a newline or the end)");
        SkipSpace(newlineOk: true);
        return new GbnfRule(name, body, start);
    }

    private GbnfNode ParseAlternatives(bool nested)
    {
        int start = _pos;
        var items = new List<GbnfNode> { ParseSequence(nested) };
        while (Current == '|')
        {
            _pos++;
            SkipSpace(newlineOk: true);
            items.Add(ParseSequence(nested));
        }
        return items.Count == 1 ? items[0] : new GbnfAlternatives(items) { Offset = start };
    }

    private GbnfSequence ParseSequence(bool nested)
    {
        int start = _pos;
        var items = new List<GbnfNode>();
        while (!AtEnd)
        {
            int itemStart = _pos;
            char c = Current;
            if (c == '"')
            {
                _pos++;
                var chars = new List<GbnfNode>();
                while (Current != '"')
                {
                    if (AtEnd)
                        throw Error("unterminated string literal", itemStart);
                    int at = _pos;
                    int cp = ParseChar();
                    chars.Add(new GbnfCharClass(CodePointSet.Single(cp, () => Error("a surrogate code point cannot be matched", at))) { Offset = at });
                }
                _pos++;
                items.Add(new GbnfSequence(chars) { Offset = itemStart });
                SkipSpace(nested);
            }
            else if (c == '[')
            {
                _pos++;
                bool negated = false;
                if (Current == '^')
                {
                    negated = true;
                    _pos++;
                }
                var ranges = new List<(int, int)>();
                while (Current != ']')
                {
                    if (AtEnd)
                        throw Error("unterminated character class", itemStart);
                    int lo = ParseChar();
                    int hi = lo;
                    if (Current == '-' && Peek(1) != ']' && _pos + 1 < _text.Length)
                    {
                        _pos++;
                        int at = _pos;
                        hi = ParseChar();
                        if (hi < lo)
                            throw Error("a character range's end is before its start", at);
                    }
                    ranges.Add((lo, hi));
                }
                _pos++;
                var set = CodePointSet.FromRanges(ranges);
                items.Add(new GbnfCharClass(negated ? set.Complement() : set) { Offset = itemStart });
                SkipSpace(nested);
            }
            else if (IsWordChar(c))
            {
                string name = ParseName();
                items.Add(new GbnfRuleRef(name) { Offset = itemStart });
                SkipSpace(nested);
            }
            else if (c == '(')
            {
                _pos++;
                SkipSpace(newlineOk: true);
                GbnfNode inner = ParseAlternatives(nested: true);
                if (Current != ')')
                    throw Error(AtEnd ? "missing ')'" : $"expected ')' but found '{Describe(Current)}'");
                _pos++;
                items.Add(inner is GbnfAlternatives ? inner : new GbnfSequence([inner]) { Offset = itemStart });
                SkipSpace(nested);
            }
            else if (c == '.')
            {
                _pos++;
                items.Add(new GbnfCharClass(CodePointSet.Any) { Offset = itemStart });
                SkipSpace(nested);
            }
            else if (c is '*' or '+' or '?')
            {
                _pos++;
                SkipSpace(nested);
                Repeat(items, c == '+' ? 1 : 0, c == '?' ? 1 : -1, itemStart);
            }
            else if (c == '{')
            {
                _pos++;
                SkipSpace(nested);
                int min = ParseInt();
                SkipSpace(nested);
                int max;
                if (Current == '}')
                {
                    max = min;
                }
                else if (Current == ',')
                {
                    _pos++;
                    SkipSpace(nested);
                    max = char.IsAsciiDigit(Current) ? ParseInt() : -1;
                    SkipSpace(nested);
                    if (Current != '}')
                        throw Error("expected '}' to close the repetition");
                }
                else
                {
                    throw Error("expected ',' or '}' in the repetition");
                }
                _pos++;
                SkipSpace(nested);
                if (min > MaxRepetitions)
                    throw Error($"more than {MaxRepetitions} repetitions", itemStart);
                if (max > MaxRepetitions)
                    max = -1;
                if (max >= 0 && max < min)
                    throw Error($"the repetition's maximum {max} is below its minimum {min}", itemStart);
                Repeat(items, min, max, itemStart);
            }
            else if (c is '<' or '!')
            {
                throw Error("token references (<[id]>, <token>, !<...>) are not supported; write the token's text as a literal");
            }
            else
            {
                break;
            }
        }
        return new GbnfSequence(items) { Offset = start };
    }

    private void Repeat(List<GbnfNode> items, int min, int max, int at)
    {
        if (items.Count == 0)
            throw Error("'*', '+', '?' or '{' with nothing before it to repeat", at);
        items[^1] = new GbnfRepeat(items[^1], min, max) { Offset = items[^1].Offset };
    }

    private int ParseInt()
    {
        int start = _pos;
        while (char.IsAsciiDigit(Current))
            _pos++;
        if (_pos == start)
            throw Error("expected a number");
        if (!int.TryParse(_text.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value > 1_000_000)
            throw Error($"more than {MaxRepetitions} repetitions", start);
        return value;
    }

    private string ParseName()
    {
        int start = _pos;
        while (IsWordChar(Current))
            _pos++;
        if (_pos == start)
            throw Error(AtEnd ? "expected a rule name, found the end" : $"expected a rule name, found '{Describe(Current)}'");
        return _text[start.._pos];
    }

    private int ParseChar()
    {
        int start = _pos;
        if (Current == '\\')
        {
            char e = Peek(1);
            _pos += 2;
            switch (e)
            {
                case 'x': return ParseHex(2, start);
                case 'u': return ParseHex(4, start);
                case 'U': return ParseHex(8, start);
                case 't': return '\t';
                case 'r': return '\r';
                case 'n': return '\n';
                case '\\' or '"' or '[' or ']' or '-': return e;
                default:
                    throw Error(e == '\0' ? "unexpected end after '\\'" : $"unknown escape '\\{Describe(e)}'", start);
            }
        }
        if (AtEnd)
            throw Error("unexpected end of the grammar");
        if (char.IsHighSurrogate(Current) && char.IsLowSurrogate(Peek(1)))
        {
            int cp = char.ConvertToUtf32(Current, Peek(1));
            _pos += 2;
            return cp;
        }
        if (char.IsSurrogate(Current))
            throw Error("a lone surrogate in the grammar text");
        return _text[_pos++];
    }

    private int ParseHex(int digits, int start)
    {
        int value = 0;
        for (int i = 0; i < digits; i++)
        {
            char c = Current;
            int d = c is >= '0' and <= '9' ? c - '0' : c is >= 'a' and <= 'f' ? c - 'a' + 10 : c is >= 'A' and <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                throw Error($"expected {digits} hex digits", start);
            value = value * 16 + d;
            _pos++;
        }
        if ((uint)value > 0x10FFFF)
            throw Error($"code point U+{value:X} is beyond U+10FFFF", start);
        return value;
    }

    private void SkipSpace(bool newlineOk)
    {
        while (!AtEnd)
        {
            char c = Current;
            if (c is ' ' or '\t' || (newlineOk && c is '\r' or '\n'))
            {
                _pos++;
            }
            else if (c == '#')
            {
                while (!AtEnd && Current is not '\r' and not '\n')
                    _pos++;
            }
            else
            {
                break;
            }
        }
    }

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_';

    private static string Describe(char c) => c switch
    {
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\0' => "end",
        _ => c.ToString(),
    };

    private GrammarFormatException Error(string message) => Error(message, _pos);

    private GrammarFormatException Error(string message, int offset) => ErrorAt(_text, message, offset);

    /// <summary>An error at <paramref name="offset"/> of <paramref name="text"/>, with its line and column (from 1).</summary>
    public static GrammarFormatException ErrorAt(string text, string message, int offset)
    {
        offset = Math.Clamp(offset, 0, text.Length);
        int line = 1, column = 1;
        for (int i = 0; i < offset; i++)
        {
            if (text[i] == '\n')
            {
                line++;
                column = 1;
            }
            else
            {
                column++;
            }
        }
        return new GrammarFormatException("Invalid GBNF grammar: " + message, line, column);
    }
}
