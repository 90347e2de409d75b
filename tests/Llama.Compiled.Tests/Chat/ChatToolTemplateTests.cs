using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Tools, calls and results rendered by the templates against what the models' real Jinja templates render: the goldens
/// in TokenizerConfigs/Tools were rendered from conversations.json by render_tool_goldens.cjs (@huggingface/jinja).
/// </summary>
public class ChatToolTemplateTests
{
    internal static readonly string ToolsFolder = Path.Combine(TestPaths.RepoRoot, "tests", "Llama.Compiled.Tests", "Chat", "TokenizerConfigs", "Tools");
    private static readonly string Configs = Path.GetDirectoryName(ToolsFolder)!;

    private static readonly JsonElement Input = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(ToolsFolder, "conversations.json"))).RootElement;

    /// <summary>The tools of conversations.json as M.E.AI declarations (name, description, the parameters' schema).</summary>
    internal static IReadOnlyList<AIFunctionDeclaration> Tools { get; } =
    [
        .. Input.GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("function")).Select(f => AIFunctionFactory.CreateDeclaration(
            f.GetProperty("name").GetString()!, f.GetProperty("description").GetString(), f.GetProperty("parameters").Clone())),
    ];

    internal static string Golden(string name) => File.ReadAllText(Path.Combine(ToolsFolder, name + ".golden.txt"));

    /// <summary>A template as the goldens were rendered: recognised from the model's config, Llama's date fixed.</summary>
    internal static ChatTemplate Template(string model)
    {
        string config = model == "Qwen3" ? Path.Combine(TestPaths.Tokenizers, "qwen3", "tokenizer_config.json") : Path.Combine(Configs, model + ".json");
        ChatTemplate template = ChatTemplate.FromTokenizerConfig(config);
        return template is Llama3ChatTemplate llama3 ? llama3 with { DateString = Llama3ChatTemplate.DefaultDateString } : template;
    }

    /// <summary>
    /// A conversation of conversations.json as M.E.AI messages: calls as <see cref="FunctionCallContent"/>, consecutive tool
    /// results as one <see cref="ChatRole.Tool"/> message of <see cref="FunctionResultContent"/>s (as UseFunctionInvocation sends them).
    /// </summary>
    internal static List<ChatMessage> Conversation(string name, bool system)
    {
        var messages = new List<ChatMessage>();
        if (system)
            messages.Add(new ChatMessage(ChatRole.System, Input.GetProperty("system").GetProperty("content").GetString()));
        foreach (JsonElement m in Input.GetProperty("conversations").GetProperty(name).EnumerateArray())
        {
            string role = m.GetProperty("role").GetString()!;
            string content = m.GetProperty("content").GetString()!;
            if (role == "tool")
            {
                var result = new FunctionResultContent(m.GetProperty("tool_call_id").GetString()!, content);
                if (messages[^1].Role == ChatRole.Tool)
                    messages[^1].Contents.Add(result);
                else
                    messages.Add(new ChatMessage(ChatRole.Tool, [result]));
            }
            else if (m.TryGetProperty("tool_calls", out JsonElement calls))
            {
                List<AIContent> contents = content.Length > 0 ? [new TextContent(content)] : [];
                foreach (JsonElement call in calls.EnumerateArray())
                {
                    JsonElement function = call.GetProperty("function");
                    var arguments = function.GetProperty("arguments").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
                    contents.Add(new FunctionCallContent(call.GetProperty("id").GetString()!, function.GetProperty("name").GetString()!, arguments));
                }
                messages.Add(new ChatMessage(ChatRole.Assistant, contents));
            }
            else
            {
                messages.Add(new ChatMessage(new ChatRole(role), content));
            }
        }
        return messages;
    }

    public static TheoryData<string, string, string?> Renders()
    {
        var data = new TheoryData<string, string, string?>();
        foreach (string model in new[] { "Llama-3.2-1B-Instruct", "Qwen2.5-0.5B-Instruct", "Qwen3" })
        {
            foreach (string conversation in new[] { "ask", "call", "answer" })
                data.Add(model, conversation, null);
            data.Add(model, "answer", "notools");
        }
        foreach (string model in new[] { "Qwen2.5-0.5B-Instruct", "Qwen3" })
        {
            foreach (string conversation in new[] { "parallel", "thinkcall", "think" })
                data.Add(model, conversation, null);
        }
        data.Add("Llama-3.2-1B-Instruct", "ask", "systools");
        data.Add("Llama-3.2-1B-Instruct", "call", "systools");
        return data;
    }

    [Theory]
    [MemberData(nameof(Renders))]
    public void RendersToolsCallsAndResultsAsTheJinjaTemplate(string model, string conversation, string? variant)
    {
        ChatTemplate template = Template(model);
        if (variant == "systools")
            template = ((Llama3ChatTemplate)template) with { ToolsInUserMessage = false };
        IReadOnlyList<AIFunctionDeclaration>? tools = variant == "notools" ? null : Tools;
        foreach (string system in new[] { "system", "nosystem" })
        {
            string name = string.Join(".", new[] { model, conversation, system, variant }.Where(x => x is not null));
            Assert.Equal(Golden(name), template.Render(Conversation(conversation, system == "system"), tools));
        }
    }

    [Fact]
    public void TheToolFormatComesWithTheTemplate()
    {
        Assert.Same(ToolCallFormat.Llama3Json, Template("Llama-3.2-1B-Instruct").ToolCallFormat);
        Assert.Same(ToolCallFormat.Hermes, Template("Qwen2.5-0.5B-Instruct").ToolCallFormat);
        Assert.Same(ToolCallFormat.Hermes, Template("Qwen3").ToolCallFormat);
        Assert.Equal(ChatTemplate.Qwen3, Template("Qwen3"));
        Assert.Equal(ChatTemplate.Qwen25, Template("Qwen2.5-0.5B-Instruct"));
        Assert.Equal(ChatTemplate.Qwen25, ChatTemplate.FromName("Qwen2.5"));
        Assert.True(ChatTemplate.Llama31.SupportsTools);

        // Templates of models without a tool format.
        foreach (string model in new[] { "Meta-Llama-3-8B-Instruct", "SmolLM2-135M-Instruct", "Llama-2-7b-chat-hf", "TinyLlama-1.1B-Chat-v1.0" })
            Assert.Null(ChatTemplate.FromTokenizerConfig(Path.Combine(Configs, model + ".json")).ToolCallFormat);
        Assert.False(ChatTemplate.ChatML.SupportsTools || ChatTemplate.Llama3.SupportsTools || ChatTemplate.Plain.SupportsTools);
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("chatml")]
    [InlineData("zephyr")]
    [InlineData("plain")]
    public void ATemplateWithoutAToolFormatRefusesTools(string name)
    {
        ChatTemplate template = ChatTemplate.FromName(name);
        List<ChatMessage> messages = Conversation("ask", system: false);

        var e = Assert.Throws<NotSupportedException>(() => template.Render(messages, Tools));
        Assert.Contains($"'{template.Name}'", e.Message);
        Assert.Contains("ToolMode", e.Message);
        // Without tools it renders as before.
        Assert.Equal(template.Render(messages), template.Render(messages, tools: null));
        Assert.Equal(template.Render(messages), template.Render(messages, []));
    }

    [Fact]
    public void Llama31TakesOneCallPerMessageAndNeedsAUserMessageForTheTools()
    {
        ChatTemplate llama = Template("Llama-3.2-1B-Instruct");

        var e = Assert.Throws<ArgumentException>(() => llama.Render(Conversation("parallel", system: false), Tools));
        Assert.Contains("single tool-calls", e.Message);
        Assert.Throws<ArgumentException>(() => llama.Render([new ChatMessage(ChatRole.System, "Hi")], Tools));
        // In the system message the tools need no user message.
        Assert.Contains("You have access to the following functions.",
            ((Llama3ChatTemplate)llama with { ToolsInUserMessage = false }).Render([new ChatMessage(ChatRole.System, "Hi")], Tools));
    }

    [Fact]
    public void ResultsThatAreNoStringsAreCompactJson()
    {
        ChatTemplate qwen = Template("Qwen3");
        ChatMessage[] messages =
        [
            new(ChatRole.User, "Hi"),
            new(ChatRole.Assistant, [new FunctionCallContent("c1", "f", new Dictionary<string, object?> { ["n"] = 3, ["s"] = "x\"y", ["list"] = new[] { 1, 2 } })]),
            new(ChatRole.Tool, [new FunctionResultContent("c1", JsonDocument.Parse("""{ "a": [1, 2], "b": "é" }""").RootElement), new FunctionResultContent("c2", 42)]),
        ];

        string text = qwen.Render(messages, tools: null);

        Assert.Contains("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 3, \"s\": \"x\\\"y\", \"list\": [1, 2]}}\n</tool_call>", text);
        Assert.Contains("<tool_response>\n{\"a\":[1,2],\"b\":\"é\"}\n</tool_response>\n<tool_response>\n42\n</tool_response><|im_end|>", text);
    }
}

/// <summary>The parsers of the tool-call formats, fed whole answers and answers cut into pieces.</summary>
public class ToolCallParserTests
{
    private static List<AIContent> Parse(ToolCallFormat format, params string[] pieces)
    {
        ToolCallParser parser = format.CreateParser();
        var output = new List<AIContent>();
        foreach (string piece in pieces)
            parser.Append(piece, output);
        parser.Complete(output);
        Assert.Equal(output.OfType<FunctionCallContent>().Count(), parser.CallCount);
        return output;
    }

    /// <summary>The answer fed whole, and one character at a time: the same texts (joined) and calls.</summary>
    private static List<AIContent> ParseBothWays(ToolCallFormat format, string answer)
    {
        List<AIContent> whole = Parse(format, answer);
        List<AIContent> pieces = Parse(format, [.. answer.Select(c => c.ToString())]);
        Assert.Equal(Describe(whole), Describe(pieces));
        return whole;
    }

    /// <summary>Texts joined between calls, calls as name(arguments).</summary>
    private static List<string> Describe(List<AIContent> contents)
    {
        var result = new List<string>();
        string text = "";
        foreach (AIContent content in contents)
        {
            if (content is TextContent t)
            {
                text += t.Text;
                continue;
            }
            if (text.Length > 0)
                result.Add("text:" + text);
            text = "";
            var call = (FunctionCallContent)content;
            result.Add($"call:{call.Name}({string.Join(",", call.Arguments!.Select(a => a.Key + "=" + ((JsonElement)a.Value!).GetRawText()))})");
            Assert.StartsWith("call_", call.CallId);
        }
        if (text.Length > 0)
            result.Add("text:" + text);
        return result;
    }

    [Fact]
    public void HermesFindsCallsAfterText()
    {
        List<AIContent> output = ParseBothWays(ToolCallFormat.Hermes,
            "Let me look both up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>");

        Assert.Equal(["text:Let me look both up.", "call:get_weather(city=\"Paris\")", "call:get_time(timezone=\"Europe/Paris\")"], Describe(output));
    }

    [Fact]
    public void HermesPassesTextWithoutCallsThroughUnchanged()
    {
        string answer = "  Hello <b>world</b>, a < b and <tool_ not a call.\n\n";
        List<AIContent> output = ParseBothWays(ToolCallFormat.Hermes, answer);

        Assert.Equal(answer, string.Concat(output.Cast<TextContent>().Select(t => t.Text)));
    }

    [Fact]
    public void HermesHoldsBackOnlyWhatMayStartACall()
    {
        ToolCallParser parser = ToolCallFormat.Hermes.CreateParser();
        var output = new List<AIContent>();

        parser.Append("Sure <tool", output);
        Assert.Equal(["Sure"], output.Cast<TextContent>().Select(t => t.Text));
        Assert.False(parser.InCall);
        parser.Append("_call>\n{\"name\": ", output);
        Assert.True(parser.InCall);
        Assert.Single(output);
        parser.Append("\"f\"}\n</tool_call>", output);
        Assert.False(parser.InCall);
        Assert.Equal("f", Assert.IsType<FunctionCallContent>(output[^1]).Name);
        Assert.Empty(Assert.IsType<FunctionCallContent>(output[^1]).Arguments!);
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>")]      // malformed JSON
    [InlineData("<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>")]                   // no name
    [InlineData("<tool_call>\n[\"f\"]\n</tool_call>")]                                       // no object
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": 3}\n</tool_call>")]            // arguments no object
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}")]                 // cut short
    public void HermesReturnsAMalformedCallAsText(string answer)
    {
        List<AIContent> output = ParseBothWays(ToolCallFormat.Hermes, "Hm. " + answer);

        Assert.Equal(["text:Hm. " + answer], Describe(output));
    }

    [Fact]
    public void HermesTakesAnUnclosedCallAtTheEndAndArgumentsAsAString()
    {
        // A constrained call stops after its JSON; some models write the arguments as a JSON string.
        Assert.Equal(["call:f(a=1)"], Describe(ParseBothWays(ToolCallFormat.Hermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}")));
        Assert.Equal(["call:f(a=1)"], Describe(ParseBothWays(ToolCallFormat.Hermes, "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>")));
    }

    [Theory]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}")]
    [InlineData("  \n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}  ")]
    [InlineData("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}")]
    [InlineData("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}")]
    public void Llama3FindsTheMessageThatIsACall(string answer)
    {
        Assert.Equal(["call:get_weather(city=\"Paris\")"], Describe(ParseBothWays(ToolCallFormat.Llama3Json, answer)));
    }

    [Theory]
    [InlineData("Paris is sunny. {\"name\": \"x\"}")]                  // JSON after text is no call
    [InlineData("{ this is not json }")]                                // malformed: text
    [InlineData("{\"city\": \"Paris\"}")]                              // JSON without a name
    [InlineData("<|python_tag|>brave_search.call(query=\"x\")")]      // built-in tools are not supported
    [InlineData("<|python")]                                            // a tag cut short
    [InlineData("\n\n")]
    public void Llama3ReturnsAnythingElseAsText(string answer)
    {
        List<AIContent> output = ParseBothWays(ToolCallFormat.Llama3Json, answer);

        Assert.Equal(answer, string.Concat(output.Cast<TextContent>().Select(t => t.Text)));
    }

    [Fact]
    public void Llama3StreamsTextAtOnceAndHoldsBackWhatMayBeACall()
    {
        ToolCallParser parser = ToolCallFormat.Llama3Json.CreateParser();
        var output = new List<AIContent>();
        parser.Append("It", output);
        Assert.Equal(["It"], output.Cast<TextContent>().Select(t => t.Text));

        parser = ToolCallFormat.Llama3Json.CreateParser();
        output.Clear();
        parser.Append(" {\"name\"", output);
        Assert.Empty(output);
        Assert.True(parser.InCall);
    }

    [Fact]
    public void TheOpeningAndTheSchemaOfACall()
    {
        Assert.Equal("{\"name\": \"", ToolCallFormat.Llama3Json.GetOpening());
        Assert.Equal("{\"name\": \"get_time\", \"parameters\": ", ToolCallFormat.Llama3Json.GetOpening("get_time"));
        Assert.Equal("<tool_call>\n{\"name\": \"get_time\", \"arguments\": ", ToolCallFormat.Hermes.GetOpening("get_time"));

        JsonElement schema = ToolCallFormat.Hermes.GetCallJsonSchema(ChatToolTemplateTests.Tools);
        JsonElement[] choices = [.. schema.GetProperty("anyOf").EnumerateArray()];
        Assert.Equal(2, choices.Length);
        Assert.Equal("get_weather", choices[0].GetProperty("properties").GetProperty("name").GetProperty("const").GetString());
        Assert.Equal(["city"], choices[0].GetProperty("properties").GetProperty("arguments").GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["name", "arguments"], choices[0].GetProperty("required").EnumerateArray().Select(e => e.GetString()));

        JsonElement one = ToolCallFormat.Llama3Json.GetCallJsonSchema(ChatToolTemplateTests.Tools, "get_time");
        Assert.Equal("get_time", Assert.Single(one.GetProperty("anyOf").EnumerateArray()).GetProperty("properties").GetProperty("name").GetProperty("const").GetString());
        Assert.True(Assert.Single(one.GetProperty("anyOf").EnumerateArray()).GetProperty("properties").TryGetProperty("parameters", out _));
    }
}
