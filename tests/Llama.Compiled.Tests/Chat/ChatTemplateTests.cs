using System;
using System.Collections.Generic;
using System.IO;
using Microsoft.Extensions.AI;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// The templates against the prompts the real Jinja chat templates render. The TokenizerConfigs
/// folder holds each model's chat_template (as in its tokenizer_config.json) and the goldens that
/// <c>render_goldens.py</c> rendered from them with jinja2 the way transformers does.
/// </summary>
public class ChatTemplateTests
{
    private static readonly string Configs = Path.Combine(TestPaths.RepoRoot, "tests", "Llama.Compiled.Tests", "Chat", "TokenizerConfigs");

    private static readonly ChatMessage[] WithSystem =
    [
        new(ChatRole.System, "You are a helpful assistant."),
        new(ChatRole.User, "Hello!"),
        new(ChatRole.Assistant, "Hi there! How can I help?"),
        new(ChatRole.User, "Tell me a story."),
    ];

    private static readonly ChatMessage[] WithoutSystem = WithSystem[1..];

    private static string Golden(string model, string conversation) =>
        File.ReadAllText(Path.Combine(Configs, $"{model}.{conversation}.golden.txt"));

    private static string Config(string model) => Path.Combine(Configs, model + ".json");

    public static TheoryData<string> Models => new()
    {
        "Llama-2-7b-chat-hf",
        "Meta-Llama-3-8B-Instruct",
        "Llama-3.2-1B-Instruct",
        "SmolLM2-135M-Instruct",
        "Qwen2.5-0.5B-Instruct",
        "TinyLlama-1.1B-Chat-v1.0",
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void RendersWhatTheJinjaTemplateRenders(string model)
    {
        ChatTemplate template = ChatTemplate.FromTokenizerConfig(Config(model));
        // The goldens were rendered with a fixed date (transformers would use today's for Llama 3.2).
        if (template is Llama3ChatTemplate llama3)
            template = llama3 with { DateString = Llama3ChatTemplate.DefaultDateString };

        Assert.Equal(Golden(model, "system"), template.Render(WithSystem));
        Assert.Equal(Golden(model, "nosystem"), template.Render(WithoutSystem));
    }

    [Theory]
    [InlineData("Llama-2-7b-chat-hf", "llama2")]
    [InlineData("Meta-Llama-3-8B-Instruct", "llama3")]
    [InlineData("Llama-3.2-1B-Instruct", "llama3.1")]
    [InlineData("SmolLM2-135M-Instruct", "chatml")]
    [InlineData("Qwen2.5-0.5B-Instruct", "chatml")]
    [InlineData("TinyLlama-1.1B-Chat-v1.0", "zephyr")]
    public void RecognisesTheFamily(string model, string family)
    {
        Assert.Equal(family, ChatTemplate.FromTokenizerConfig(Config(model)).Name);
    }

    [Fact]
    public void RecognisesWhatTheFamilyImplies()
    {
        Assert.Equal(
            new ChatMLChatTemplate { DefaultSystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", HermesToolCalls = true },
            ChatTemplate.FromTokenizerConfig(Config("Qwen2.5-0.5B-Instruct")));
        Assert.Equal(
            new ChatMLChatTemplate { DefaultSystemPrompt = "You are a helpful AI assistant named SmolLM, trained by Hugging Face" },
            ChatTemplate.FromTokenizerConfig(Config("SmolLM2-135M-Instruct")));
        // Llama 3.2 asks for today's date; 3.0 has no date at all.
        Assert.Equal(new Llama3ChatTemplate { DatePreamble = true, DateString = null }, ChatTemplate.FromTokenizerConfig(Config("Llama-3.2-1B-Instruct")));
        Assert.Equal(new Llama3ChatTemplate(), ChatTemplate.FromTokenizerConfig(Config("Meta-Llama-3-8B-Instruct")));
    }

    [Fact]
    public void Llama32WritesTodaysDate()
    {
        var template = new Llama3ChatTemplate { DatePreamble = true, DateString = null };
        string today = DateTime.Now.ToString("dd MMM yyyy", System.Globalization.CultureInfo.InvariantCulture);

        Assert.Contains("Today Date: " + today + "\n\n", template.Render(WithSystem));
    }

    [Theory]
    [InlineData("Qwen2.5-0.5B-Instruct")]
    [InlineData("TinyLlama-1.1B-Chat-v1.0")]
    [InlineData("Meta-Llama-3-8B-Instruct")]
    public void AGgufFileCarriesItsOwnTemplate(string model)
    {
        // llama.cpp's converter copies tokenizer_config.json's chat_template to tokenizer.chat_template, and the BOS/EOS
        // tokens are ids into tokenizer.ggml.tokens: a user with only the GGUF gets the same template.
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Config(model)));
        string? Text(string key) => config.RootElement.TryGetProperty(key, out var v) ? v.ValueKind switch
        {
            System.Text.Json.JsonValueKind.String => v.GetString(),
            System.Text.Json.JsonValueKind.Object => v.GetProperty("content").GetString(),
            _ => null,
        } : null;
        string folder = Directory.CreateTempSubdirectory("gguf-template").FullName;
        try
        {
            string gguf = Path.Combine(folder, "model.gguf");
            using (var writer = new Llama.Compiled.Tools.GgufWriter(gguf))
            {
                writer.AddString("general.architecture", "llama");
                writer.AddValue("tokenizer.ggml.tokens", new[] { "<unk>", Text("bos_token") ?? "<s>", Text("eos_token") ?? "</s>" });
                writer.AddUInt32("tokenizer.ggml.bos_token_id", 1);
                writer.AddUInt32("tokenizer.ggml.eos_token_id", 2);
                writer.AddString("tokenizer.chat_template", config.RootElement.GetProperty("chat_template").GetString()!);
                writer.Finish();
            }
            Assert.Equal(ChatTemplate.FromTokenizerConfig(Config(model)), ChatTemplate.FromTokenizerConfig(gguf));
            Assert.Equal(Golden(model, "system"), ChatTemplate.FromTokenizerConfig(gguf).Render(WithSystem));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void AModelWithoutAChatTemplateGetsThePlainOne()
    {
        // stories260K's tokenizer_config.json has no chat_template; a folder without the file neither.
        Assert.IsType<PlainChatTemplate>(ChatTemplate.FromTokenizerConfig(TestPaths.Stories260KHf));
        Assert.IsType<PlainChatTemplate>(ChatTemplate.FromTokenizerConfig(Path.Combine(TestPaths.Stories260KHf, "model.safetensors")));
        Assert.IsType<PlainChatTemplate>(ChatTemplate.FromTokenizerConfig(TestPaths.Stories260K));
        // A GGUF file without tokenizer.chat_template.
        Assert.IsType<PlainChatTemplate>(ChatTemplate.FromTokenizerConfig(Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf")));
    }

    [Fact]
    public void PlainRendersUserAndAssistantLines()
    {
        Assert.Equal(
            "You are a helpful assistant.\n\nUser: Hello!\nAssistant: Hi there! How can I help?\nUser: Tell me a story.\nAssistant:",
            ChatTemplate.Plain.Render(WithSystem));
        Assert.Equal(["\nUser:"], ChatTemplate.Plain.StopSequences);
        Assert.True(ChatTemplate.Plain.PrependBos);
    }

    [Fact]
    public void TemplatesSayHowTurnsEndAndWhereBosIs()
    {
        Assert.Equal(["</s>"], ChatTemplate.Llama2.StopSequences);
        Assert.Contains("<|eot_id|>", ChatTemplate.Llama3.StopSequences);
        Assert.Contains("<|im_end|>", ChatTemplate.ChatML.StopSequences);
        Assert.Equal(["</s>"], ChatTemplate.Zephyr.StopSequences);

        Assert.True(ChatTemplate.Llama2.BosInText);
        Assert.True(ChatTemplate.Llama3.BosInText);
        Assert.False(ChatTemplate.ChatML.BosInText || ChatTemplate.ChatML.PrependBos);
        Assert.True(ChatTemplate.Zephyr.PrependBos);
    }

    [Fact]
    public void ChoosesByName()
    {
        Assert.IsType<Llama2ChatTemplate>(ChatTemplate.FromName("Llama-2"));
        Assert.Equal(ChatTemplate.Llama31, ChatTemplate.FromName("llama3.2"));
        Assert.IsType<ChatMLChatTemplate>(ChatTemplate.FromName("ChatML"));
        Assert.IsType<ZephyrChatTemplate>(ChatTemplate.FromName("zephyr"));
        Assert.IsType<PlainChatTemplate>(ChatTemplate.FromName("plain"));
        foreach (string name in ChatTemplate.Names)
            Assert.NotNull(ChatTemplate.FromName(name));
        Assert.Throws<ArgumentException>("name", () => ChatTemplate.FromName("jinja"));
    }

    [Fact]
    public void Llama2NeedsAlternatingTurns()
    {
        Assert.Throws<ArgumentException>("messages", () => ChatTemplate.Llama2.Render([new(ChatRole.User, "a"), new(ChatRole.User, "b")]));
        Assert.Throws<ArgumentException>("messages", () => ChatTemplate.Llama2.Render([new(ChatRole.Assistant, "a")]));
    }

    [Fact]
    public void AnUnknownTemplateIsNotGuessed()
    {
        string folder = TempFolder();
        try
        {
            // Gemma's markers are none of the supported families'.
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
                """{"chat_template": "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}"}""");

            var e = Assert.Throws<NotSupportedException>(() => ChatTemplate.FromTokenizerConfig(folder));
            Assert.Contains("FromName", e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void ReadsTheDefaultOfSeveralNamedTemplatesAndAddedTokenObjects()
    {
        string folder = TempFolder();
        try
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """
                {
                  "eos_token": {"content": "<|end|>", "special": true},
                  "chat_template": [
                    {"name": "tool_use", "template": "{{ '<|im_start|>' }}"},
                    {"name": "default", "template": "{% for message in messages %}{{ '<|user|>\n' + message['content'] + eos_token }}{% endfor %}{{ '<|assistant|>' }}"}
                  ]
                }
                """);

            Assert.Equal(new ZephyrChatTemplate { EosToken = "<|end|>" }, ChatTemplate.FromTokenizerConfig(Path.Combine(folder, "tokenizer_config.json")));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void BrokenJsonIsAModelFormatError()
    {
        string folder = TempFolder();
        try
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{ \"chat_template\": ");
            var e = Assert.Throws<ModelFormatException>(() => ChatTemplate.FromTokenizerConfig(folder));
            Assert.Contains("tokenizer_config.json", e.Message);

            // An empty file (or a FIFO, which reports no length) is not read at all.
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "");
            e = Assert.Throws<ModelFormatException>(() => ChatTemplate.FromTokenizerConfig(folder));
            Assert.Contains("empty", e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static string TempFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), "llama-compiled-template-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }
}
