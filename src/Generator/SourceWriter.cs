using System;
using System.Text;

namespace Llama.Compiled.Generator;

/// <summary>
/// Writes C# text with indentation. Multi-line fragments are re-indented line by line, so the
/// emitter can keep code templates as readable raw strings.
/// </summary>
internal sealed class SourceWriter
{
    private const string IndentUnit = "    ";

    private readonly StringBuilder _text = new();
    private int _indent;

    /// <summary>Writes each line of <paramref name="lines"/> at the current indentation; blank lines stay empty.</summary>
    public SourceWriter Line(string lines = "")
    {
        foreach (string line in lines.Replace("\r\n", "\n").Split('\n'))
        {
            if (line.Length > 0)
            {
                for (int i = 0; i < _indent; i++)
                    _text.Append(IndentUnit);
                _text.Append(line);
            }
            _text.Append('\n');
        }
        return this;
    }

    /// <summary>Writes <paramref name="header"/>, an opening brace, and indents until the returned scope is disposed.</summary>
    public Scope Block(string header)
    {
        Line(header);
        Line("{");
        _indent++;
        return new Scope(this);
    }

    public override string ToString() => _text.ToString();

    public readonly struct Scope : IDisposable
    {
        private readonly SourceWriter _writer;

        public Scope(SourceWriter writer) => _writer = writer;

        public void Dispose()
        {
            _writer._indent--;
            _writer.Line("}");
        }
    }
}
