using System;
using System.Runtime.CompilerServices;
using System.Text;

namespace Llama.Compiled;

/// <summary>
/// A forward-only reader of the JSON of a <c>tokenizer.json</c>: objects, arrays, strings, integers and literals, with
/// the positions of values so that the small sections can be handed to <see cref="System.Text.Json.JsonDocument"/>.
/// </summary>
/// <remarks>
/// Why not <see cref="System.Text.Json.Utf8JsonReader"/> for the vocabulary and the merges (~540K JSON tokens): in a young
/// process (tiered compilation on, a user's default) the reader's methods run as slow startup code for most of a
/// load — reading Llama 3's file token by token took ~170 ms the first time and ~20 ms once promoted. This reader's
/// methods are compiled optimized at their first call (<see cref="MethodImplOptions.AggressiveOptimization"/>); the
/// few string escapes of a vocabulary are decoded here, UTF-8 by <see cref="Encoding.UTF8"/>.
/// </remarks>
internal ref struct TokenizerJsonScanner
{
    private readonly ReadOnlySpan<byte> _json;
    private readonly string _source;
    private int _position;

    public TokenizerJsonScanner(ReadOnlySpan<byte> json, string source)
    {
        _json = json;
        _source = source;
        // A UTF-8 byte order mark is allowed before the value.
        if (json.StartsWith("\uFEFF"u8))
            _position = 3;
    }

    public readonly int Position => _position;

    /// <summary>The next significant byte, without consuming it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public byte Peek()
    {
        SkipWhitespace();
        if (_position >= _json.Length)
            throw EndsEarly();
        return _json[_position];
    }

    /// <summary>Consumes <paramref name="token"/> (after whitespace) or throws, naming <paramref name="what"/>.</summary>
    public void Expect(byte token, string what)
    {
        if (Peek() != token)
            throw new ModelFormatException($"{_source}: {what}: expected '{(char)token}' at byte {_position}, found '{(char)_json[_position]}'");
        _position++;
    }

    /// <summary>After an object's '{' or a member: true and positioned at the next name when there is one, false after the closing '}'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool NextMember(ref bool first)
    {
        byte b = Peek();
        if (b == '}')
        {
            _position++;
            return false;
        }
        if (!first)
        {
            if (b != ',')
                throw Unexpected("',' or '}' between object members");
            _position++;
        }
        first = false;
        return true;
    }

    /// <summary>Like <see cref="NextMember"/> for an array's elements (']' ends it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool NextElement(ref bool first)
    {
        byte b = Peek();
        if (b == ']')
        {
            _position++;
            return false;
        }
        if (!first)
        {
            if (b != ',')
                throw Unexpected("',' or ']' between array elements");
            _position++;
        }
        first = false;
        return true;
    }

    /// <summary>Consumes <paramref name="token"/> (after whitespace) when it is next.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryConsume(byte token)
    {
        if (Peek() != token)
            return false;
        _position++;
        return true;
    }

    /// <summary>Reads a member name and its ':'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public string ReadName()
    {
        string name = ReadString();
        if (!TryConsume((byte)':'))
            throw Unexpected($"':' after \"{name}\"");
        return name;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public string ReadString()
    {
        if (Peek() != '"')
            throw Unexpected("a string");
        int start = _position + 1;
        int end = start;
        while (end < _json.Length && _json[end] != '"' && _json[end] != '\\')
            end++;
        if (end < _json.Length && _json[end] == '"')
        {
            _position = end + 1;
            return Encoding.UTF8.GetString(_json[start..end]);
        }
        char[] buffer = new char[StringByteLength()];
        int length = ReadString(buffer);
        return new string(buffer, 0, length);
    }

    /// <summary>Reads a string into <paramref name="buffer"/> from <paramref name="offset"/> on (growing it, keeping what is before the offset) and returns its length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int ReadString(ref char[] buffer, int offset)
    {
        if (Peek() != '"')
            throw Unexpected("a string");
        int start = _position + 1;
        int end = start;
        while (end < _json.Length && _json[end] != '"' && _json[end] != '\\')
            end++;
        // A string has no more chars than UTF-8 bytes.
        int capacity = end < _json.Length && _json[end] == '"' ? end - start : StringByteLength();
        if (buffer.Length < offset + capacity)
            Array.Resize(ref buffer, Math.Max(offset + capacity, buffer.Length * 2));
        return ReadString(buffer.AsSpan(offset));
    }

    /// <summary>An upper bound of the next string's length in chars (its length in bytes), with the scanner on its opening quote.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int StringByteLength()
    {
        if (Peek() != '"')
            throw Unexpected("a string");
        int end = _json[(_position + 1)..].IndexOf((byte)'"');
        while (end >= 0 && IsEscaped(_position + 1 + end))
        {
            int more = _json[(_position + 2 + end)..].IndexOf((byte)'"');
            end = more < 0 ? -1 : end + 1 + more;
        }
        if (end < 0)
            throw EndsEarly();
        return end;
    }

    /// <summary>Reads a string into <paramref name="destination"/> (at least <see cref="StringByteLength"/> long) and returns its length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int ReadString(Span<char> destination)
    {
        if (Peek() != '"')
            throw Unexpected("a string");
        int start = ++_position;
        int i = start;
        ReadOnlySpan<byte> json = _json;
        while (i < json.Length)
        {
            byte b = json[i];
            if (b == '"')
            {
                _position = i + 1;
                return Encoding.UTF8.GetChars(json[start..i], destination);
            }
            if (b == '\\')
                return ReadEscapedString(start, destination);
            i++;
        }
        throw EndsEarly();
    }

    private int ReadEscapedString(int start, Span<char> destination)
    {
        ReadOnlySpan<byte> json = _json;
        int written = 0, run = start, i = start;
        while (true)
        {
            if (i >= json.Length)
                throw EndsEarly();
            byte b = json[i];
            if (b == '"')
            {
                written += Encoding.UTF8.GetChars(json[run..i], destination[written..]);
                _position = i + 1;
                return written;
            }
            if (b != '\\')
            {
                i++;
                continue;
            }
            written += Encoding.UTF8.GetChars(json[run..i], destination[written..]);
            if (i + 1 >= json.Length)
                throw EndsEarly();
            char c = (char)json[i + 1];
            i += 2;
            switch (c)
            {
                case '"' or '\\' or '/': destination[written++] = c; break;
                case 'b': destination[written++] = '\b'; break;
                case 'f': destination[written++] = '\f'; break;
                case 'n': destination[written++] = '\n'; break;
                case 'r': destination[written++] = '\r'; break;
                case 't': destination[written++] = '\t'; break;
                case 'u':
                    if (i + 4 > json.Length)
                        throw EndsEarly();
                    int value = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        int digit = HexValue(json[i + k]);
                        if (digit < 0)
                            throw new ModelFormatException($"{_source}: a \\u escape at byte {i - 2} is not four hexadecimal digits");
                        value = value * 16 + digit;
                    }
                    destination[written++] = (char)value;
                    i += 4;
                    break;
                default:
                    throw new ModelFormatException($"{_source}: '\\{c}' at byte {i - 2} is not a JSON escape");
            }
            run = i;
        }
    }

    /// <summary>Reads an integer that fits an <see cref="int"/>; false (the value skipped) for any other value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryReadInt32(out int value)
    {
        byte b = Peek();
        int i = _position;
        bool negative = b == '-';
        if (negative)
            i++;
        long result = 0;
        int digits = 0;
        while (i < _json.Length && (uint)(_json[i] - '0') <= 9 && digits < 11)
        {
            result = result * 10 + (_json[i] - '0');
            i++;
            digits++;
        }
        bool integer = digits > 0 && (i == _json.Length || !IsNumberPart(_json[i]));
        if (negative)
            result = -result;
        if (!integer || result is < int.MinValue or > int.MaxValue)
        {
            SkipValue();
            value = 0;
            return false;
        }
        _position = i;
        value = (int)result;
        return true;
    }

    /// <summary>true for the literal <c>true</c>, false for any other value (skipped).</summary>
    public bool ReadTrue()
    {
        bool isTrue = Peek() == 't' && _json[_position..].StartsWith("true"u8);
        SkipValue();
        return isTrue;
    }

    /// <summary>Skips one value of any kind.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SkipValue()
    {
        int depth = 0;
        do
        {
            byte b = Peek();
            switch (b)
            {
                case (byte)'{' or (byte)'[':
                    depth++;
                    _position++;
                    break;
                case (byte)'}' or (byte)']':
                    if (depth == 0)
                        throw Unexpected("a value");
                    depth--;
                    _position++;
                    break;
                case (byte)',' or (byte)':':
                    if (depth == 0)
                        throw Unexpected("a value");
                    _position++;
                    break;
                case (byte)'"':
                    _position += StringByteLength() + 2;
                    break;
                default:
                    int start = _position;
                    while (_position < _json.Length && IsNumberPart(_json[_position]))
                        _position++;
                    if (_position == start)
                        throw Unexpected("a value");
                    if (_position == _json.Length && depth > 0)
                        throw EndsEarly();
                    break;
            }
        }
        while (depth > 0);
    }

    /// <summary>After the top-level value: only whitespace may follow.</summary>
    public void ExpectEnd()
    {
        SkipWhitespace();
        if (_position != _json.Length)
            throw Unexpected("the end of the file");
    }

    // Letters, digits, '+', '-', '.': numbers and the literals true, false, null.
    private static bool IsNumberPart(byte b) => (uint)((b | 0x20) - 'a') <= 'z' - 'a' || (uint)(b - '0') <= 9 || b is (byte)'-' or (byte)'+' or (byte)'.';

    private readonly bool IsEscaped(int quote)
    {
        int backslashes = 0;
        for (int i = quote - 1; i >= 0 && _json[i] == '\\'; i--)
            backslashes++;
        return (backslashes & 1) == 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SkipWhitespace()
    {
        while (_position < _json.Length && _json[_position] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
            _position++;
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private readonly ModelFormatException EndsEarly() => new($"{_source}: the JSON ends early (at byte {_json.Length})");

    private readonly ModelFormatException Unexpected(string expected) =>
        _position >= _json.Length ? EndsEarly() : new($"{_source} is not valid JSON: expected {expected} at byte {_position}, found '{(char)_json[_position]}'");
}
