using System.Collections.Generic;
using System.Globalization;
using System.Text;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator.Json;

/// <summary>
/// A strict RFC 8259 JSON parser that records the span of every value. It is our own rather than
/// System.Text.Json because a generator must not depend on what the compiler host happens to load,
/// and because the spans let a diagnostic point at the exact line and column of a bad key.
/// Nesting is capped so hostile input cannot overflow the stack.
/// </summary>
internal sealed class JsonParser
{
    private const int MaxDepth = 64;

    private readonly string _text;
    private int _pos;

    private JsonParser(string text) => _text = text;

    /// <summary>Parses a whole document; on failure returns null and the offset and reason of the first error.</summary>
    public static JsonNode? Parse(string text, out int errorOffset, out string? error)
    {
        var parser = new JsonParser(text);
        try
        {
            parser.SkipWhitespace();
            JsonNode root = parser.ParseValue(0);
            parser.SkipWhitespace();
            if (parser._pos != text.Length)
                throw new JsonSyntaxException(parser._pos, "unexpected text after the end of the document");
            errorOffset = -1;
            error = null;
            return root;
        }
        catch (JsonSyntaxException e)
        {
            errorOffset = e.Offset;
            error = e.Reason;
            return null;
        }
    }

    private JsonNode ParseValue(int depth)
    {
        if (_pos >= _text.Length)
            throw new JsonSyntaxException(_pos, "unexpected end of the document, a value was expected");
        char c = _text[_pos];
        switch (c)
        {
            case '{': return ParseObject(depth + 1);
            case '[': return ParseArray(depth + 1);
            case '"':
                int start = _pos;
                string s = ParseString();
                return new JsonString(TextSpan.FromBounds(start, _pos), s);
            case 't': return ParseLiteral("true", span => new JsonBoolean(span, true));
            case 'f': return ParseLiteral("false", span => new JsonBoolean(span, false));
            case 'n': return ParseLiteral("null", span => new JsonNull(span));
            default:
                if (c == '-' || (c >= '0' && c <= '9'))
                    return ParseNumber();
                throw new JsonSyntaxException(_pos, $"unexpected character '{c}'");
        }
    }

    private JsonObject ParseObject(int depth)
    {
        if (depth > MaxDepth)
            throw new JsonSyntaxException(_pos, "nesting is deeper than " + MaxDepth);
        int start = _pos++;
        var properties = new List<JsonProperty>();
        SkipWhitespace();
        if (Peek() == '}')
        {
            _pos++;
            return new JsonObject(TextSpan.FromBounds(start, _pos), properties);
        }
        while (true)
        {
            SkipWhitespace();
            if (Peek() != '"')
                throw new JsonSyntaxException(_pos, "a property name in double quotes was expected");
            int nameStart = _pos;
            string name = ParseString();
            var nameSpan = TextSpan.FromBounds(nameStart, _pos);
            SkipWhitespace();
            Expect(':');
            SkipWhitespace();
            properties.Add(new JsonProperty(name, nameSpan, ParseValue(depth)));
            SkipWhitespace();
            char next = Peek();
            _pos++;
            if (next == '}')
                return new JsonObject(TextSpan.FromBounds(start, _pos), properties);
            if (next != ',')
                throw new JsonSyntaxException(_pos - 1, "',' or '}' was expected after a property");
        }
    }

    private JsonArray ParseArray(int depth)
    {
        if (depth > MaxDepth)
            throw new JsonSyntaxException(_pos, "nesting is deeper than " + MaxDepth);
        int start = _pos++;
        var items = new List<JsonNode>();
        SkipWhitespace();
        if (Peek() == ']')
        {
            _pos++;
            return new JsonArray(TextSpan.FromBounds(start, _pos), items);
        }
        while (true)
        {
            SkipWhitespace();
            items.Add(ParseValue(depth));
            SkipWhitespace();
            char next = Peek();
            _pos++;
            if (next == ']')
                return new JsonArray(TextSpan.FromBounds(start, _pos), items);
            if (next != ',')
                throw new JsonSyntaxException(_pos - 1, "',' or ']' was expected after an array item");
        }
    }

    private string ParseString()
    {
        int start = _pos;
        _pos++; // opening quote
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _text.Length)
                throw new JsonSyntaxException(start, "unterminated string");
            char c = _text[_pos++];
            if (c == '"')
                return sb.ToString();
            if (c < ' ')
                throw new JsonSyntaxException(_pos - 1, "control character in a string");
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            if (_pos >= _text.Length)
                throw new JsonSyntaxException(start, "unterminated string");
            char e = _text[_pos++];
            switch (e)
            {
                case '"': sb.Append('"'); break;
                case '\\': sb.Append('\\'); break;
                case '/': sb.Append('/'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'u':
                    if (_pos + 4 > _text.Length
                        || !int.TryParse(_text.Substring(_pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
                        throw new JsonSyntaxException(_pos - 2, "invalid \\u escape");
                    sb.Append((char)code);
                    _pos += 4;
                    break;
                default:
                    throw new JsonSyntaxException(_pos - 2, $"invalid escape '\\{e}'");
            }
        }
    }

    private JsonNumber ParseNumber()
    {
        int start = _pos;
        if (Peek() == '-')
            _pos++;
        if (Peek() == '0')
            _pos++;
        else if (!ReadDigits())
            throw new JsonSyntaxException(_pos, "a digit was expected");
        if (Peek() == '.')
        {
            _pos++;
            if (!ReadDigits())
                throw new JsonSyntaxException(_pos, "a digit was expected after '.'");
        }
        if (Peek() == 'e' || Peek() == 'E')
        {
            _pos++;
            if (Peek() == '+' || Peek() == '-')
                _pos++;
            if (!ReadDigits())
                throw new JsonSyntaxException(_pos, "a digit was expected in the exponent");
        }
        return new JsonNumber(TextSpan.FromBounds(start, _pos), _text.Substring(start, _pos - start));
    }

    private bool ReadDigits()
    {
        int start = _pos;
        while (_pos < _text.Length && _text[_pos] >= '0' && _text[_pos] <= '9')
            _pos++;
        return _pos > start;
    }

    private JsonNode ParseLiteral(string literal, System.Func<TextSpan, JsonNode> create)
    {
        if (string.CompareOrdinal(_text, _pos, literal, 0, literal.Length) != 0)
            throw new JsonSyntaxException(_pos, $"unexpected character '{_text[_pos]}'");
        int start = _pos;
        _pos += literal.Length;
        return create(TextSpan.FromBounds(start, _pos));
    }

    private void Expect(char c)
    {
        if (Peek() != c)
            throw new JsonSyntaxException(_pos, $"'{c}' was expected");
        _pos++;
    }

    private char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

    private void SkipWhitespace()
    {
        while (_pos < _text.Length && (_text[_pos] == ' ' || _text[_pos] == '\t' || _text[_pos] == '\n' || _text[_pos] == '\r'))
            _pos++;
    }

    private sealed class JsonSyntaxException : System.Exception
    {
        public JsonSyntaxException(int offset, string reason) : base(reason)
        {
            Offset = offset;
            Reason = reason;
        }

        public int Offset { get; }
        public string Reason { get; }
    }
}
